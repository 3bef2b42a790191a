#pragma once
// Bounded multi-producer single-consumer ring (D. Vyukov's bounded queue
// with one consumer): any number of threads push, one thread pops, no locks.
// A producer claims a cell with one CAS on the head and publishes it by
// storing the cell's sequence number; the consumer needs no atomic RMW at
// all.  Storage is allocated once in the constructor.  T must be trivially
// copyable.
//
// A producer preempted between its claim and its publish makes the consumer
// see the ring as empty at that cell until it publishes: later pushes wait
// behind it, nothing is lost or reordered.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace slr {

template <typename T>
class MpscRing {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  // capacity is rounded up to a power of two (at least 2).
  explicit MpscRing(size_t capacity) {
    size_t n = 2;
    while (n < capacity) n <<= 1;
    mask_ = n - 1;
    cells_ = std::make_unique<Cell[]>(n);
    for (size_t i = 0; i < n; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }

  // Any thread.  False when full.
  bool push(const T& v) {
    size_t pos = head_.load(std::memory_order_relaxed);
    Cell* c;
    for (;;) {
      c = &cells_[pos & mask_];
      const size_t seq = c->seq.load(std::memory_order_acquire);
      const intptr_t dif = intptr_t(seq) - intptr_t(pos);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (dif < 0) {
        return false;  // the consumer has not freed this cell yet: full
      } else {
        pos = head_.load(std::memory_order_relaxed);  // another producer took it
      }
    }
    c->value = v;
    c->seq.store(pos + 1, std::memory_order_release);
    return true;
  }

  // The consumer.  False when empty.
  bool pop(T& v) {
    Cell& c = cells_[tail_ & mask_];
    if (c.seq.load(std::memory_order_acquire) != tail_ + 1) return false;
    v = c.value;
    c.seq.store(tail_ + mask_ + 1, std::memory_order_release);
    ++tail_;
    return true;
  }

  // The consumer only (a hint: a push may be in flight).
  bool empty() const { return cells_[tail_ & mask_].seq.load(std::memory_order_acquire) != tail_ + 1; }
  size_t capacity() const { return mask_ + 1; }

 private:
  struct Cell {
    std::atomic<size_t> seq{0};
    T value{};
  };
  alignas(64) std::atomic<size_t> head_{0};  // producers
  alignas(64) size_t tail_ = 0;              // the consumer
  size_t mask_ = 0;
  std::unique_ptr<Cell[]> cells_;
};

}  // namespace slr
