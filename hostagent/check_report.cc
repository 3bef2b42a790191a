#include "hostagent/check_report.h"

#include <nlohmann/json.hpp>

namespace slr::host {

bool CheckReport::allOk() const {
  for (const auto& i : items)
    if (!i.ok) return false;
  return true;
}

void renderText(const CheckReport& r, std::ostream& out) {
  size_t failed = 0;
  for (const auto& i : r.items) {
    if (!i.ok) ++failed;
    out << (i.ok ? "[ok]   " : "[FAIL] ") << i.name;
    if (!i.detail.empty()) out << " \u2014 " << i.detail;
    out << '\n';
  }
  out << r.items.size() << (r.items.size() == 1 ? " check, " : " checks, ") << failed
      << " failed\n";
}

void renderJson(const CheckReport& r, std::ostream& out) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& i : r.items)
    checks.push_back({{"name", i.name}, {"ok", i.ok}, {"detail", i.detail}});
  nlohmann::json doc = {{"ok", r.allOk()}, {"checks", std::move(checks)}};
  out << doc.dump() << '\n';
}

}  // namespace slr::host
