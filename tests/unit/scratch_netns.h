#pragma once
// Root-only unit tests run in a scratch network namespace: the whole test
// process moves into a fresh one (once, marked by an environment variable so
// every test file shares it) with `lo` up.  Tests that need no network are
// unaffected; without root the kernel-facing tests skip.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include "core/netlink.h"

namespace slr::testing {

inline bool enterScratchNetns() {
  if (geteuid() != 0) return false;
  if (std::getenv("SLR_TEST_SCRATCH_NETNS") == nullptr) {
    if (unshare(CLONE_NEWNET) != 0) return false;
    setenv("SLR_TEST_SCRATCH_NETNS", "1", 1);
  }
  auto lo = nl::linkIndex("lo");
  return lo.ok() && nl::linkSetUp(*lo).ok();
}

}  // namespace slr::testing

#define REQUIRE_SCRATCH_NETNS()                    \
  if (!::slr::testing::enterScratchNetns())        \
  GTEST_SKIP() << "needs root to enter a scratch network namespace"
