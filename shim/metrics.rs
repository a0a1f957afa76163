//! berthd's ContainerStats as containerd's metrics types: cgroup v1's
//! `io.containerd.cgroups.v1.Metrics` on v1 and hybrid hosts, v2's
//! `io.containerd.cgroups.v2.Metrics` on pure v2 hosts, as the runc shim answers. A figure
//! berthd leaves absent (its controller is missing) stays 0, the protobuf default, which is
//! what the runc shim reports for a controller it cannot read.
use berth_api::ContainerStatsResponse;
use containerd_shim::protos::{
    cgroups::metrics as v1,
    cgroups_v2::metrics as v2,
    protobuf::{well_known_types::any::Any, Message, MessageField},
};

/// Which of containerd's types fits this host: v2's when cgroup2 alone is mounted on
/// /sys/fs/cgroup (its root then has `cgroup.controllers`).
pub fn host_is_unified() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

pub fn to_any(stats: &ContainerStatsResponse, unified: bool) -> Any {
    let (type_url, value) = if unified {
        let metrics = to_v2(stats);
        (
            "io.containerd.cgroups.v2.Metrics",
            metrics.write_to_bytes().expect("metrics encode"),
        )
    } else {
        let metrics = to_v1(stats);
        (
            "io.containerd.cgroups.v1.Metrics",
            metrics.write_to_bytes().expect("metrics encode"),
        )
    };
    Any {
        type_url: type_url.into(),
        value,
        ..Default::default()
    }
}

fn to_v1(stats: &ContainerStatsResponse) -> v1::Metrics {
    let mut metrics = v1::Metrics::new();
    if let Some(cpu) = &stats.cpu {
        metrics.cpu = MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: cpu.usage_total_ns.unwrap_or_default(),
                kernel: cpu.usage_system_ns.unwrap_or_default(),
                user: cpu.usage_user_ns.unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: cpu.periods.unwrap_or_default(),
                throttled_periods: cpu.throttled_periods.unwrap_or_default(),
                throttled_time: cpu.throttled_time_ns.unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(memory) = &stats.memory {
        let usage = memory.usage_bytes.unwrap_or_default();
        metrics.memory = MessageField::some(v1::MemoryStat {
            cache: memory.cache_bytes.unwrap_or_default(),
            rss: memory.rss_bytes.unwrap_or_default(),
            total_cache: memory.cache_bytes.unwrap_or_default(),
            total_rss: memory.rss_bytes.unwrap_or_default(),
            inactive_file: memory.inactive_file_bytes.unwrap_or_default(),
            total_inactive_file: memory.inactive_file_bytes.unwrap_or_default(),
            usage: MessageField::some(v1::MemoryEntry {
                usage,
                limit: memory.limit_bytes.unwrap_or(u64::MAX),
                max: memory.max_usage_bytes.unwrap_or_default(),
                ..Default::default()
            }),
            swap: MessageField::some(v1::MemoryEntry {
                usage: usage + memory.swap_usage_bytes.unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        });
        metrics.memory_oom_control = MessageField::some(v1::MemoryOomControl {
            oom_kill: memory.oom_kills.unwrap_or_default(),
            ..Default::default()
        });
    }
    if let Some(pids) = &stats.pids {
        metrics.pids = MessageField::some(v1::PidsStat {
            current: pids.current.unwrap_or_default(),
            limit: pids.limit.unwrap_or_default(),
            ..Default::default()
        });
    }
    if let Some(io) = &stats.io {
        let entry = |op: &str, value: Option<u64>| v1::BlkIOEntry {
            op: op.into(),
            value: value.unwrap_or_default(),
            ..Default::default()
        };
        metrics.blkio = MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: vec![
                entry("Read", io.read_bytes),
                entry("Write", io.write_bytes),
            ],
            io_serviced_recursive: vec![entry("Read", io.read_ops), entry("Write", io.write_ops)],
            ..Default::default()
        });
    }
    metrics
}

fn to_v2(stats: &ContainerStatsResponse) -> v2::Metrics {
    let mut metrics = v2::Metrics::new();
    if let Some(cpu) = &stats.cpu {
        let micros = |ns: Option<u64>| ns.unwrap_or_default() / 1000;
        metrics.cpu = MessageField::some(v2::CPUStat {
            usage_usec: micros(cpu.usage_total_ns),
            user_usec: micros(cpu.usage_user_ns),
            system_usec: micros(cpu.usage_system_ns),
            nr_periods: cpu.periods.unwrap_or_default(),
            nr_throttled: cpu.throttled_periods.unwrap_or_default(),
            throttled_usec: micros(cpu.throttled_time_ns),
            ..Default::default()
        });
    }
    if let Some(memory) = &stats.memory {
        metrics.memory = MessageField::some(v2::MemoryStat {
            usage: memory.usage_bytes.unwrap_or_default(),
            usage_limit: memory.limit_bytes.unwrap_or(u64::MAX),
            max_usage: memory.max_usage_bytes.unwrap_or_default(),
            file: memory.cache_bytes.unwrap_or_default(),
            anon: memory.rss_bytes.unwrap_or_default(),
            inactive_file: memory.inactive_file_bytes.unwrap_or_default(),
            swap_usage: memory.swap_usage_bytes.unwrap_or_default(),
            ..Default::default()
        });
        metrics.memory_events = MessageField::some(v2::MemoryEvents {
            oom_kill: memory.oom_kills.unwrap_or_default(),
            ..Default::default()
        });
    }
    if let Some(pids) = &stats.pids {
        metrics.pids = MessageField::some(v2::PidsStat {
            current: pids.current.unwrap_or_default(),
            limit: pids.limit.unwrap_or_default(),
            ..Default::default()
        });
    }
    if let Some(io) = &stats.io {
        metrics.io = MessageField::some(v2::IOStat {
            usage: vec![v2::IOEntry {
                rbytes: io.read_bytes.unwrap_or_default(),
                wbytes: io.write_bytes.unwrap_or_default(),
                rios: io.read_ops.unwrap_or_default(),
                wios: io.write_ops.unwrap_or_default(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> ContainerStatsResponse {
        ContainerStatsResponse {
            timestamp: None,
            cpu: Some(berth_api::CpuStats {
                usage_total_ns: Some(3_000_000),
                usage_user_ns: Some(2_000_000),
                usage_system_ns: Some(1_000_000),
                ..Default::default()
            }),
            memory: Some(berth_api::MemoryStats {
                usage_bytes: Some(4096),
                limit_bytes: None,
                inactive_file_bytes: Some(1024),
                oom_kills: Some(1),
                ..Default::default()
            }),
            pids: Some(berth_api::PidsStats {
                current: Some(2),
                limit: None,
            }),
            io: None,
        }
    }

    #[test]
    fn v1_metrics_carry_berths_figures() {
        let any = to_any(&stats(), false);
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let metrics = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(metrics.cpu.usage.total, 3_000_000);
        assert_eq!(metrics.cpu.usage.user, 2_000_000);
        assert_eq!(metrics.memory.usage.usage, 4096);
        assert_eq!(
            metrics.memory.usage.limit,
            u64::MAX,
            "no limit reads as unlimited"
        );
        assert_eq!(metrics.memory.total_inactive_file, 1024);
        assert_eq!(metrics.memory_oom_control.oom_kill, 1);
        assert_eq!(metrics.pids.current, 2);
        assert!(metrics.blkio.is_none(), "absent figures stay absent");
    }

    #[test]
    fn v2_metrics_are_in_microseconds() {
        let any = to_any(&stats(), true);
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let metrics = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(metrics.cpu.usage_usec, 3000);
        assert_eq!(metrics.cpu.system_usec, 1000);
        assert_eq!(metrics.memory.usage, 4096);
        assert_eq!(metrics.memory.inactive_file, 1024);
        assert_eq!(metrics.memory_events.oom_kill, 1);
        assert!(metrics.io.is_none());
    }
}
