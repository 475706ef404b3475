// The server's Prometheus metrics (/metrics): requests, latencies, stages, inference slots, caches, readiness.
#pragma once

#include <mutex>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::server {

struct Metrics {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
      .Name("maskmaker_requests_total").Help("HTTP requests by route and status").Register(registry);
  prometheus::Family<prometheus::Histogram>& latency = prometheus::BuildHistogram()
      .Name("maskmaker_request_duration_seconds").Help("Request latency by route").Register(registry);
  prometheus::Family<prometheus::Histogram>& stages = prometheus::BuildHistogram()
      .Name("maskmaker_stage_duration_seconds").Help("Pipeline stage latency").Register(registry);
  prometheus::Family<prometheus::Gauge>& gauges = prometheus::BuildGauge()
      .Name("maskmaker_inference").Help("Inference slots: state=active|queued").Register(registry);
  prometheus::Family<prometheus::Counter>& cache = prometheus::BuildCounter()
      .Name("maskmaker_cache_events_total").Help("Cache hits and misses: image embeddings, text embeddings, detections per image, instance masks").Register(registry);
  prometheus::Family<prometheus::Gauge>& ready = prometheus::BuildGauge()
      .Name("maskmaker_ready").Help("1 once the models are loaded").Register(registry);
  prometheus::Gauge& active = gauges.Add({{"state", "active"}});
  prometheus::Gauge& queued = gauges.Add({{"state", "queued"}});
  std::mutex cache_mutex;
  CacheStats last_cache;

  static const prometheus::Histogram::BucketBoundaries& buckets() {
    static const prometheus::Histogram::BucketBoundaries b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                              0.5, 1, 2.5, 5, 10, 30};
    return b;
  }
  void observe_stage(const char* stage, double ms) {
    if (ms > 0) stages.Add({{"stage", stage}}, buckets()).Observe(ms / 1000.0);
  }
  void sync_cache(const CacheStats& now) {
    std::lock_guard lock(cache_mutex);
    struct Counters { const char* cache; uint64_t CacheStats::*hits; uint64_t CacheStats::*misses; };
    static constexpr Counters all[] = {{"image", &CacheStats::image_hits, &CacheStats::image_misses},
                                       {"text", &CacheStats::text_hits, &CacheStats::text_misses},
                                       {"detections", &CacheStats::detection_hits, &CacheStats::detection_misses},
                                       {"masks", &CacheStats::mask_hits, &CacheStats::mask_misses}};
    for (const Counters& c : all) {
      cache.Add({{"cache", c.cache}, {"event", "hit"}}).Increment(double(now.*c.hits - last_cache.*c.hits));
      cache.Add({{"cache", c.cache}, {"event", "miss"}}).Increment(double(now.*c.misses - last_cache.*c.misses));
    }
    last_cache = now;
  }
};

}  // namespace maskmaker::server
