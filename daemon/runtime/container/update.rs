//! UpdateResources and ContainerStats: the container's cgroup limits changed as `runc
//! update` changes them, and the usage its cgroups count.
//!
//! An update is the JSON of an OCI `linux.resources` object merged into the one state.json
//! keeps (config.json's at create): a field left out keeps its value. The fields runc update
//! takes may change; every other field may only repeat the container's value, since
//! containerd sends the whole object (devices included) and runc drops what it does not
//! take. Anything else is refused naming the field, so nothing asked for is dropped in
//! silence.
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use crate::{
    cgroups::{self, stats::Stats, Layout},
    container::{Container, Status},
    error::{Error, OnContainer, Result},
};

/// `(section, field)` of `linux.resources` that an update changes: runc update's flags and
/// the fields of its `-r` JSON that berth applies (cpu.idle and cpu.burst it does not).
const UPDATABLE: &[(&str, &str)] = &[
    ("memory", "limit"),
    ("memory", "reservation"),
    ("memory", "swap"),
    ("cpu", "shares"),
    ("cpu", "quota"),
    ("cpu", "period"),
    ("cpu", "realtimeRuntime"),
    ("cpu", "realtimePeriod"),
    ("cpu", "cpus"),
    ("cpu", "mems"),
    ("blockIO", "weight"),
    ("pids", "limit"),
];

/// The sections whose fields are merged one by one; other top-level fields (devices,
/// hugepageLimits, rdma) are taken whole.
const SECTIONS: &[&str] = &["memory", "cpu", "blockIO", "pids", "network", "unified"];

/// Why an update is refused: the field, and what is wrong with it.
#[derive(Debug, PartialEq)]
pub(crate) struct Refusal {
    pub field: String,
    pub reason: String,
}

fn field_name(section: &str, key: Option<&str>) -> String {
    match (section, key) {
        (section, None) => format!("linux.resources.{section}"),
        ("unified", Some(key)) => format!("linux.resources.unified[{key:?}]"),
        (section, Some(key)) => format!("linux.resources.{section}.{key}"),
    }
}

/// runc writes nothing for a 0 or an empty string: such a value changes nothing.
fn leaves_unchanged(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Number(n) => n.as_i64() == Some(0) || n.as_u64() == Some(0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Absent, null, `[]` and `{}` all say "none".
fn same(requested: Option<&Value>, current: Option<&Value>) -> bool {
    let none = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    (none(requested) && none(current)) || requested == current
}

/// The field of `request` that does not parse, for a message that names it.
fn unparsable_field(request: &Map<String, Value>, error: serde_json::Error) -> Refusal {
    let fails = |value: Value| serde_json::from_value::<LinuxResources>(value).err();
    for (section, value) in request {
        let Some(error) = fails(json!({ section: value })) else {
            continue;
        };
        let inner = value
            .as_object()
            .into_iter()
            .flatten()
            .find_map(|(key, v)| fails(json!({ section: { key: v } })).map(|error| (key, error)));
        let (field, error) = match inner {
            Some((key, error)) => (field_name(section, Some(key)), error),
            None => (field_name(section, None), error),
        };
        return Refusal {
            field,
            reason: error.to_string(),
        };
    }
    Refusal {
        field: "linux.resources".into(),
        reason: error.to_string(),
    }
}

/// `request` (JSON bytes) merged into `current`. `unified_applies`: the host is pure v2,
/// where `linux.resources.unified` is written (v1 and hybrid hosts ignore it, at create too).
pub(crate) fn merge(
    current: Option<&LinuxResources>,
    request: &[u8],
    unified_applies: bool,
) -> std::result::Result<LinuxResources, Refusal> {
    let refuse = |field: String, reason: String| Refusal { field, reason };
    let request: Value = serde_json::from_slice(request)
        .map_err(|e| refuse("linux.resources".into(), format!("not JSON: {e}")))?;
    let Value::Object(raw) = &request else {
        return Err(refuse(
            "linux.resources".into(),
            "must be a JSON object".into(),
        ));
    };
    // Through oci-spec and back: fields it does not know are dropped (as at create), and
    // both sides of a comparison are spelt alike.
    let typed: LinuxResources =
        serde_json::from_value(request.clone()).map_err(|error| unparsable_field(raw, error))?;
    let Value::Object(requested) = serde_json::to_value(&typed).expect("resources serialize")
    else {
        unreachable!("resources serialize to an object");
    };
    let mut merged =
        serde_json::to_value(current.cloned().unwrap_or_default()).expect("resources serialize");

    let mut leaves: Vec<(&str, Option<&str>, &Value)> = Vec::new();
    for (section, value) in &requested {
        match value.as_object() {
            Some(fields) if SECTIONS.contains(&section.as_str()) => leaves.extend(
                fields
                    .iter()
                    .map(|(key, v)| (section.as_str(), Some(key.as_str()), v)),
            ),
            _ => leaves.push((section, None, value)),
        }
    }
    for (section, key, value) in leaves {
        let updatable = match key {
            Some(_) if section == "unified" => unified_applies,
            Some(key) => UPDATABLE.contains(&(section, key)),
            None => false,
        };
        let current = merged
            .get(section)
            .and_then(|s| match key {
                Some(key) => s.get(key),
                None => Some(s),
            })
            .cloned();
        if !updatable {
            if same(Some(value), current.as_ref()) {
                continue;
            }
            let reason = if section == "unified" {
                "berth writes linux.resources.unified on cgroup v2 hosts only, and this one is not"
            } else {
                "an update cannot change it (runc update does not take it either): leave it out or repeat the container's value"
            };
            return Err(refuse(field_name(section, key), reason.into()));
        }
        if leaves_unchanged(value) {
            continue;
        }
        let key = key.expect("updatable fields are inside a section");
        let section = merged
            .as_object_mut()
            .expect("resources serialize to an object")
            .entry(section)
            .or_insert_with(|| json!({}));
        if let Some(section) = section.as_object_mut() {
            section.insert(key.to_owned(), value.clone());
        }
    }
    // runc's reading of "memory unlimited" with swap left out: swap unlimited too.
    let memory = requested.get("memory");
    let field = |name| memory.and_then(|m| m.get(name));
    if field("limit") == Some(&json!(-1)) && field("swap").is_none_or(leaves_unchanged) {
        merged["memory"]["swap"] = json!(-1);
    }
    serde_json::from_value(merged)
        .map_err(|e| refuse("linux.resources".into(), format!("merged value: {e}")))
}

impl Container {
    /// runc update: `request` merged into the resources state.json keeps, checked, written
    /// to the cgroups, then persisted.
    pub async fn update_resources(&mut self, request: &[u8]) -> Result<()> {
        let status = self.status();
        let current = match self.state() {
            Some(state) if status.can_update() => state.resources.clone(),
            _ => {
                return Err(Error::IncorrectStatus {
                    id: self.id.to_string(),
                    action: "update",
                    status,
                })
            }
        };
        let unified_applies = self.cgroups.layout() == Layout::Unified;
        let merged = merge(current.as_deref(), request, unified_applies).map_err(|refusal| {
            Error::InvalidUpdate {
                id: self.id.to_string(),
                field: refusal.field,
                reason: refusal.reason,
            }
        })?;
        cgroups::validate(&merged).on_container("update", &self.id)?;
        let applied = merged.clone();
        self.with_cgroups(move |cgroups, dirs| cgroups.update(dirs, &applied))
            .await
            .on_container("update", &self.id)?;
        self.update(|state| state.resources = Some(Box::new(merged)))
            .await
    }

    /// The usage its cgroups count; a stopped container's too (its cgroups keep the totals
    /// until delete).
    pub async fn stats(&self) -> Result<Stats> {
        if self.state().is_none() {
            return Err(Error::IncorrectStatus {
                id: self.id.to_string(),
                action: "read the usage of",
                status: Status::Unknown,
            });
        }
        self.with_cgroups(|cgroups, dirs| cgroups.stats(dirs))
            .await
            .on_container("read the usage of", &self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    fn merged(current: Value, request: Value) -> std::result::Result<Value, Refusal> {
        merge(
            Some(&resources(current)),
            request.to_string().as_bytes(),
            false,
        )
        .map(|r| serde_json::to_value(r).unwrap())
    }

    fn config() -> Value {
        json!({
            "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}],
            "memory": {"limit": 67108864, "swap": 134217728, "swappiness": 10},
            "cpu": {"shares": 512, "cpus": "0"},
            "pids": {"limit": 32}
        })
    }

    #[test]
    fn fields_left_out_keep_their_values() {
        let after = merged(config(), json!({"memory": {"limit": 100663296}})).unwrap();
        assert_eq!(after["memory"]["limit"], 100663296);
        assert_eq!(after["memory"]["swap"], 134217728);
        assert_eq!(after["memory"]["swappiness"], 10);
        assert_eq!(after["cpu"], json!({"shares": 512, "cpus": "0"}));
        assert_eq!(after["pids"]["limit"], 32);
        assert_eq!(after["devices"], config()["devices"]);
        // A section the config did not have.
        let after = merged(config(), json!({"blockIO": {"weight": 300}})).unwrap();
        assert_eq!(after["blockIO"], json!({"weight": 300}));
        let fresh = merge(
            None,
            br#"{"cpu": {"quota": 50000, "period": 100000}}"#,
            false,
        )
        .unwrap();
        assert_eq!(fresh.cpu().as_ref().unwrap().quota(), Some(50000));
    }

    #[test]
    fn zeros_and_empty_strings_change_nothing_as_with_runc() {
        let after = merged(
            config(),
            json!({"memory": {"limit": 0}, "cpu": {"cpus": "", "shares": 0}, "pids": {}}),
        )
        .unwrap();
        assert_eq!(after, merged(config(), json!({})).unwrap());
        assert_eq!(after["memory"]["limit"], 67108864);
        assert_eq!(after["cpu"]["cpus"], "0");
        assert_eq!(after["pids"]["limit"], 32);
    }

    #[test]
    fn unlimited_memory_with_swap_left_out_makes_swap_unlimited() {
        let after = merged(config(), json!({"memory": {"limit": -1}})).unwrap();
        assert_eq!(after["memory"]["swap"], -1);
        let after = merged(
            config(),
            json!({"memory": {"limit": -1, "swap": 268435456}}),
        )
        .unwrap();
        assert_eq!(after["memory"]["swap"], 268435456);
    }

    #[test]
    fn what_runc_update_does_not_take_may_only_repeat_the_containers_value() {
        // containerd sends the whole object, devices included.
        let mut whole = config();
        whole["memory"]["limit"] = json!(33554432);
        assert_eq!(
            merged(config(), whole).unwrap()["memory"]["limit"],
            33554432
        );
        // An empty list repeats "none".
        assert!(merged(json!({}), json!({"devices": [], "hugepageLimits": []})).is_ok());
        for (request, field) in [
            (
                json!({"devices": [{"allow": true, "access": "rwm"}]}),
                "linux.resources.devices",
            ),
            (
                json!({"memory": {"swappiness": 60}}),
                "linux.resources.memory.swappiness",
            ),
            (json!({"cpu": {"idle": 1}}), "linux.resources.cpu.idle"),
            (
                json!({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}]}}),
                "linux.resources.blockIO.throttleReadBpsDevice",
            ),
            (
                json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}),
                "linux.resources.hugepageLimits",
            ),
            (
                json!({"unified": {"memory.high": "1000000"}}),
                "linux.resources.unified[\"memory.high\"]",
            ),
        ] {
            let refusal = merged(config(), request.clone()).unwrap_err();
            assert_eq!(refusal.field, field, "{request}");
        }
        // On a pure v2 host the unified map is merged key by key.
        let current = resources(json!({"unified": {"memory.high": "1000000", "pids.max": "9"}}));
        let after = merge(
            Some(&current),
            br#"{"unified": {"memory.high": "2000000"}}"#,
            true,
        )
        .unwrap();
        let unified = after.unified().clone().unwrap();
        assert_eq!(unified["memory.high"], "2000000");
        assert_eq!(unified["pids.max"], "9");
    }

    #[test]
    fn a_value_that_does_not_parse_is_named() {
        let refusal = |request: &str| merge(None, request.as_bytes(), false).unwrap_err();
        assert_eq!(
            refusal(r#"{"memory": {"limit": "lots"}}"#).field,
            "linux.resources.memory.limit"
        );
        assert_eq!(
            refusal(r#"{"cpu": {"shares": -5}}"#).field,
            "linux.resources.cpu.shares"
        );
        assert_eq!(refusal(r#"{"pids": 7}"#).field, "linux.resources.pids");
        assert_eq!(refusal("[1]").reason, "must be a JSON object");
        assert!(refusal("{").reason.starts_with("not JSON"));
        // Fields oci-spec does not know are dropped, as at create.
        assert!(merge(None, br#"{"memroy": {"limit": 1}}"#, false).is_ok());
    }

    #[tokio::test]
    async fn only_a_container_with_an_init_is_updated_and_the_merge_is_persisted() {
        use crate::{
            cgroups::fake::{Call, Fake},
            container::Record,
            id::ContainerId,
            state::{ContainerState, SCHEMA_VERSION},
            state_dir::StateRoot,
        };
        let root = tempfile::tempdir().unwrap();
        let id = ContainerId::parse("c1").unwrap();
        let dir = StateRoot::open(root.path()).unwrap().dir(&id);
        dir.create().unwrap();
        let state = ContainerState {
            schema_version: SCHEMA_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            created: std::time::SystemTime::UNIX_EPOCH,
            annotations: Default::default(),
            init: None,
            boot_id: None,
            exit: None,
            shares_pid_namespace: false,
            cgroup_dirs: vec!["/fake/c1".into()],
            created_cgroup_dirs: vec![],
            rdt: None,
            hooks: None,
            frozen_to_kill: false,
            execs: Default::default(),
            labels: Default::default(),
            resources: Some(Box::new(resources(json!({"pids": {"limit": 32}})))),
        };
        let fake = std::sync::Arc::new(Fake::default());
        let mut stopped = Container::load(id, dir.clone(), Record::Valid(state), fake.clone());
        let refused = stopped
            .update_resources(br#"{"pids": {"limit": 64}}"#)
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::IncorrectStatus {
                    status: Status::Stopped,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        // With the fake's container paused (frozen), the update goes through.
        *fake.frozen.lock().unwrap() = true;
        stopped
            .update_resources(br#"{"memory": {"limit": 67108864}}"#)
            .await
            .unwrap();
        assert_eq!(fake.calls(), [Call::Update]);
        let saved = dir.load().unwrap().unwrap().resources.unwrap();
        assert_eq!(saved.pids().unwrap().limit(), 32);
        assert_eq!(saved.memory().unwrap().limit(), Some(67108864));
        // A bad value is refused before the cgroups are touched.
        let bad = stopped
            .update_resources(br#"{"cpu": {"shares": 1}}"#)
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("cpu.shares"), "{bad}");
        assert_eq!(fake.calls(), [Call::Update]);
    }
}
