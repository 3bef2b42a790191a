#pragma once
// The seed's Fig. 9 table update: from what the hosts advertised, for every
// advertised virtual subnet the candidates that serve it and the policy's
// selection among them, as one immutable snapshot for the workers.  Runs on
// the control thread every recompute interval, never per packet.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/policy.h"
#include "slr/forwarding.h"
#include "slr/registry.h"

namespace slr::router {

inline uint32_t v4Mask(uint8_t len) { return len == 0 ? 0 : ~uint32_t(0) << (32 - len); }

class TableBuilder {
 public:
  TableBuilder(std::unique_ptr<Policy> policy, size_t host_count);

  // Only hosts that are up take part.  A host serves an advertised prefix P
  // if one of its own advertisements covers P; its load for P is that of its
  // most specific covering advertisement.  Routes come longest prefix first.
  std::shared_ptr<const ForwardingSnapshot> build(const std::vector<HostRecord>& hosts) const;

 private:
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<Policy> stateless_;  // Maglev from host names: the on_full fallback
  size_t host_count_;
};

}  // namespace slr::router
