#pragma once
// Human-readable rendering of the status socket's JSON documents.
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace slr::cli {

// A plain left-aligned text table; numbers right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

void printStatus(const nlohmann::json& j, std::ostream& out);
void printHosts(const nlohmann::json& j, std::ostream& out);
void printFlows(const nlohmann::json& j, std::ostream& out);
// The SLR's answer to `explain PROTO SRC:SPORT DST:DPORT`: the flow and what
// the SLR knows about it, one row per candidate next hop, and the choice.
void printExplain(const nlohmann::json& j, std::ostream& out);

}  // namespace slr::cli
