//! `berth update` and `berth stats`: a container's limits changed as `runc update` changes
//! them, and its usage read back, for people (a table) or for scripts (JSON).
use std::{io::Read, path::PathBuf};

use anyhow::{bail, Context};
use berth_api::{self as proto, container_service_client::ContainerServiceClient};
use serde_json::{json, Map, Value};
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// A JSON `linux.resources` object, as `runc update -r` reads it; `-` reads standard
    /// input. Fields left out keep their values. The flags below cannot be given with it.
    #[arg(long, short, value_name = "FILE")]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (a k, m, g or t suffix multiplies by 1024s); -1 is unlimited.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_negative_numbers = true, conflicts_with = "resources")]
    memory: Option<i64>,
    /// Soft limit (memory reservation) in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_negative_numbers = true, conflicts_with = "resources")]
    memory_reservation: Option<i64>,
    /// Memory plus swap, in bytes; -1 is unlimited swap.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_negative_numbers = true, conflicts_with = "resources")]
    memory_swap: Option<i64>,
    /// Most processes the container may have; -1 is unlimited.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with = "resources"
    )]
    pids_limit: Option<i64>,
    /// CPU shares (relative weight; the cpu.weight of cgroup v2 is derived from it).
    #[arg(long, value_name = "N", conflicts_with = "resources")]
    cpu_shares: Option<u64>,
    /// CPU time allowed per period, in microseconds; -1 is no limit.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with = "resources"
    )]
    cpu_quota: Option<i64>,
    /// The period of --cpu-quota, in microseconds.
    #[arg(long, value_name = "N", conflicts_with = "resources")]
    cpu_period: Option<u64>,
    /// CPUs the container may run on, e.g. 0-2,4.
    #[arg(long, value_name = "LIST", conflicts_with = "resources")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long, value_name = "LIST", conflicts_with = "resources")]
    cpuset_mems: Option<String>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long, value_name = "N", conflicts_with = "resources")]
    blkio_weight: Option<u16>,
    id: String,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// One JSON object per container and line, with the figures of the API (absent ones
    /// are left out) instead of a table.
    #[arg(long)]
    json: bool,
    /// The containers; none means every one that has an init (created, running, paused).
    ids: Vec<String>,
}

/// A number of bytes, with an optional binary suffix (`64m`, `1G`, `512KiB`), or -1.
fn parse_bytes(text: &str) -> Result<i64, String> {
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        unit => return Err(format!("unknown unit {unit:?} (use k, m, g or t)")),
    };
    let number: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if number < 0 {
        return Err("the only negative value is -1 (unlimited)".into());
    }
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text} is too large"))
}

impl UpdateArgs {
    /// The `linux.resources` JSON the flags stand for: only what they set.
    fn flags_json(&self) -> Value {
        let mut resources = json!({});
        let mut set = |section: &str, field: &str, value: Option<Value>| {
            if let Some(value) = value {
                resources[section][field] = value;
            }
        };
        set("memory", "limit", self.memory.map(Value::from));
        set(
            "memory",
            "reservation",
            self.memory_reservation.map(Value::from),
        );
        set("memory", "swap", self.memory_swap.map(Value::from));
        set("pids", "limit", self.pids_limit.map(Value::from));
        set("cpu", "shares", self.cpu_shares.map(Value::from));
        set("cpu", "quota", self.cpu_quota.map(Value::from));
        set("cpu", "period", self.cpu_period.map(Value::from));
        set("cpu", "cpus", self.cpuset_cpus.clone().map(Value::from));
        set("cpu", "mems", self.cpuset_mems.clone().map(Value::from));
        set("blockIO", "weight", self.blkio_weight.map(Value::from));
        resources
    }

    fn request_body(&self) -> anyhow::Result<Vec<u8>> {
        match &self.resources {
            Some(path) if path.as_os_str() == "-" => {
                let mut body = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut body)
                    .context("read the resources from standard input")?;
                Ok(body)
            }
            Some(path) => std::fs::read(path).with_context(|| format!("read {}", path.display())),
            None => {
                let resources = self.flags_json();
                if resources.as_object().is_some_and(Map::is_empty) {
                    bail!("nothing to update: give --resources FILE or a limit (see berth update --help)");
                }
                Ok(resources.to_string().into_bytes())
            }
        }
    }
}

pub async fn update(
    client: &mut ContainerServiceClient<Channel>,
    args: UpdateArgs,
) -> anyhow::Result<()> {
    let resources = args.request_body()?;
    client
        .update_resources(proto::UpdateResourcesRequest {
            id: args.id,
            resources,
        })
        .await?;
    Ok(())
}

pub async fn stats(
    client: &mut ContainerServiceClient<Channel>,
    args: StatsArgs,
) -> anyhow::Result<()> {
    let ids = if args.ids.is_empty() {
        use proto::ContainerStatus::{Created, Paused, Running};
        client
            .list_containers(proto::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .into_iter()
            .filter(|c| matches!(c.status(), Created | Running | Paused))
            .map(|c| c.id)
            .collect()
    } else {
        args.ids
    };
    let mut rows = Vec::new();
    for id in ids {
        let stats = client
            .container_stats(proto::ContainerStatsRequest { id: id.clone() })
            .await?
            .into_inner();
        if args.json {
            println!("{}", stats_json(&id, &stats));
        } else {
            rows.push(row(id, &stats));
        }
    }
    if !args.json {
        print_rows(&rows);
    }
    Ok(())
}

/// An object of the figures that are present.
fn present(figures: &[(&str, Option<u64>)]) -> Value {
    Value::Object(
        figures
            .iter()
            .filter_map(|(name, value)| Some(((*name).to_owned(), Value::from((*value)?))))
            .collect(),
    )
}

fn stats_json(id: &str, stats: &proto::ContainerStatsResponse) -> Value {
    let mut out = json!({ "id": id, "timestamp": crate::time_text(&stats.timestamp) });
    if let Some(c) = &stats.cpu {
        out["cpu"] = present(&[
            ("usageTotalNs", c.usage_total_ns),
            ("usageUserNs", c.usage_user_ns),
            ("usageSystemNs", c.usage_system_ns),
            ("periods", c.periods),
            ("throttledPeriods", c.throttled_periods),
            ("throttledTimeNs", c.throttled_time_ns),
        ]);
    }
    if let Some(m) = &stats.memory {
        out["memory"] = present(&[
            ("usageBytes", m.usage_bytes),
            ("limitBytes", m.limit_bytes),
            ("cacheBytes", m.cache_bytes),
            ("inactiveFileBytes", m.inactive_file_bytes),
            ("rssBytes", m.rss_bytes),
            ("maxUsageBytes", m.max_usage_bytes),
            ("swapUsageBytes", m.swap_usage_bytes),
            ("oomKills", m.oom_kills),
        ]);
    }
    if let Some(p) = &stats.pids {
        out["pids"] = present(&[("current", p.current), ("limit", p.limit)]);
    }
    if let Some(io) = &stats.io {
        out["io"] = present(&[
            ("readBytes", io.read_bytes),
            ("writeBytes", io.write_bytes),
            ("readOps", io.read_ops),
            ("writeOps", io.write_ops),
        ]);
    }
    out
}

/// 1536 -> "1.5KiB", as docker stats writes sizes.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

const ABSENT: &str = "-";

/// One line of the table: the memory shown is the working set (usage less inactive file
/// pages), what the kubelet and docker stats show.
fn row(id: String, stats: &proto::ContainerStatsResponse) -> [String; 6] {
    let text = |value: Option<String>| value.unwrap_or_else(|| ABSENT.into());
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_total_ns)
        .map(|ns| format!("{:.2}s", ns as f64 / 1e9));
    let memory = stats.memory.as_ref();
    let working_set = memory.and_then(|m| {
        let usage = m.usage_bytes?;
        Some(usage.saturating_sub(m.inactive_file_bytes.unwrap_or(0)))
    });
    let limit = memory.and_then(|m| m.limit_bytes);
    let usage = working_set.map(|used| {
        format!(
            "{} / {}",
            bytes_text(used),
            limit.map_or_else(|| "unlimited".into(), bytes_text)
        )
    });
    let percent = working_set
        .zip(limit.filter(|l| *l > 0))
        .map(|(used, limit)| format!("{:.2}%", used as f64 * 100.0 / limit as f64));
    let io = stats.io.as_ref().and_then(|io| {
        Some(format!(
            "{} / {}",
            bytes_text(io.read_bytes?),
            bytes_text(io.write_bytes?)
        ))
    });
    let pids = stats
        .pids
        .as_ref()
        .and_then(|p| p.current)
        .map(|n| n.to_string());
    [
        id,
        text(cpu),
        text(usage),
        text(percent),
        text(io),
        text(pids),
    ]
}

fn print_rows(rows: &[[String; 6]]) {
    let header = [
        "ID",
        "CPU TIME",
        "MEM USAGE / LIMIT",
        "MEM %",
        "BLOCK I/O",
        "PIDS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("67108864"), Ok(67_108_864));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("-2").is_err());
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("m").is_err());
        assert!(parse_bytes("9999999t").is_err());
    }

    #[test]
    fn sizes_read_as_docker_writes_them() {
        assert_eq!(bytes_text(0), "0B");
        assert_eq!(bytes_text(1536), "1.5KiB");
        assert_eq!(bytes_text(64 << 20), "64.0MiB");
    }

    #[test]
    fn absent_figures_are_left_out_of_the_json_and_dashes_in_the_table() {
        let stats = proto::ContainerStatsResponse {
            cpu: Some(proto::CpuStats {
                usage_total_ns: Some(1_500_000_000),
                ..Default::default()
            }),
            memory: None,
            pids: Some(proto::PidsStats {
                current: Some(2),
                limit: None,
            }),
            ..Default::default()
        };
        let json = stats_json("c1", &stats);
        assert_eq!(json["cpu"], json!({"usageTotalNs": 1_500_000_000u64}));
        assert_eq!(json["pids"], json!({"current": 2}));
        assert!(json.get("memory").is_none() && json.get("io").is_none());
        assert_eq!(
            row("c1".into(), &stats),
            ["c1", "1.50s", "-", "-", "-", "2"]
        );
    }
}
