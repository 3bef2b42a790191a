#pragma once
// Bounded single-producer single-consumer ring: one thread pushes, one other
// thread pops, no locks.  Head and tail live on their own cache lines so the
// two sides do not false-share; each side caches its view of the other's
// index.  Storage is allocated once in the constructor.  T must be trivially
// copyable (it is copied in and out).
#include <atomic>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace slr {

template <typename T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  // capacity is rounded up to a power of two.
  explicit SpscRing(size_t capacity) {
    size_t n = 1;
    while (n < capacity) n <<= 1;
    mask_ = n - 1;
    buf_ = std::make_unique<T[]>(n);
  }

  // Producer.  False when full.
  bool push(const T& v) {
    const size_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_cache_ > mask_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h - tail_cache_ > mask_) return false;
    }
    buf_[h & mask_] = v;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

  // Consumer.  False when empty.
  bool pop(T& v) {
    const size_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_cache_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (t == head_cache_) return false;
    }
    v = buf_[t & mask_];
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Either side; a hint only.
  bool empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }
  size_t capacity() const { return mask_ + 1; }

 private:
  alignas(64) std::atomic<size_t> head_{0};  // written by the producer
  size_t tail_cache_ = 0;                    // producer's copy of tail_
  alignas(64) std::atomic<size_t> tail_{0};  // written by the consumer
  size_t head_cache_ = 0;                    // consumer's copy of head_
  alignas(64) size_t mask_ = 0;
  std::unique_ptr<T[]> buf_;
};

}  // namespace slr
