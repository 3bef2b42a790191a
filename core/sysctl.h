#pragma once
// /proc/sys access.  Paths as "net/ipv4/conf/all/rp_filter"; the dotted form
// "net.ipv4.conf.all.rp_filter" and absolute "/proc/sys/..." are accepted too
// (dotted only when there is no '/', so "eth0.100" names need the slash form).
// Values of the current network namespace for net/*.
#include <string>
#include <string_view>

#include "core/result.h"

namespace slr {

// The value with trailing whitespace/newline removed.
[[nodiscard]] Result<std::string> readSysctl(std::string_view path);
[[nodiscard]] Status writeSysctl(std::string_view path, std::string_view value);

}  // namespace slr
