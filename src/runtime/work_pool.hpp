// A process-wide pool that runs the small, independent model calls of one request side by side (detector
// crops, one decoder call per box), each single-threaded: on few cores that beats one call at a time with
// every core, because small graphs do not scale across intra-op threads (docs/performance.md).
#pragma once

#include <cstddef>
#include <functional>

namespace maskmaker::rt {

// Runs body(0) .. body(n-1), on the calling thread and the pool's workers, and returns when all are done.
// The first exception thrown by a body is rethrown here (the other indices still run). Safe to call from
// several threads at once: callers always work on their own job, so a busy pool never stalls a request.
void parallel_for(size_t n, const std::function<void(size_t)>& body);

// Pool size, workers plus the caller; fixed by the first call of rt::environment(threads).
int parallel_width();

}  // namespace maskmaker::rt
