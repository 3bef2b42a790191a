#pragma once
// The result of `slrctl host check`: an ordered list of checks, each passed
// or failed with a detail that says what was found and, on failure, how to
// fix it.  Rendering is pure so it is unit-tested byte for byte.
#include <ostream>
#include <string>
#include <vector>

namespace slr::host {

struct CheckItem {
  std::string name;    // short, stable: "local route 10.100.0.0/24"
  bool ok = false;
  std::string detail;  // what was found; on failure also why / how to fix
};

struct CheckReport {
  std::vector<CheckItem> items;

  void add(std::string name, bool ok, std::string detail) {
    items.push_back({std::move(name), ok, std::move(detail)});
  }
  bool allOk() const;
};

// One line per check: "[ok]   NAME — DETAIL" / "[FAIL] NAME — DETAIL", then a
// summary line "N checks, M failed".
void renderText(const CheckReport& r, std::ostream& out);
// {"ok":bool,"checks":[{"name":..,"ok":..,"detail":..}]} plus newline.
void renderJson(const CheckReport& r, std::ostream& out);

}  // namespace slr::host
