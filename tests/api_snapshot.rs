//! The API may only change on purpose: its shape (services, methods, messages, fields and
//! their numbers, enum values) is compared with proto/berth/v1/api.snapshot. After an
//! intended change, regenerate it with `BERTH_UPDATE_API_SNAPSHOT=1 cargo test --test api_snapshot`.
use prost::Message;

fn shape() -> String {
    let set = prost_types::FileDescriptorSet::decode(berth::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut lines = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "berth.v1") {
        for service in &file.service {
            for method in &service.method {
                lines.push(format!(
                    "rpc {}.{}({}) returns ({}{})",
                    service.name(),
                    method.name(),
                    method.input_type(),
                    if method.server_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.output_type()
                ));
            }
        }
        for message in &file.message_type {
            for field in &message.field {
                lines.push(format!(
                    "message {} field {} = {} {:?} {:?} {}",
                    message.name(),
                    field.name(),
                    field.number(),
                    field.label(),
                    field.r#type(),
                    field.type_name()
                ));
            }
        }
        for enumeration in &file.enum_type {
            for value in &enumeration.value {
                lines.push(format!(
                    "enum {} {} = {}",
                    enumeration.name(),
                    value.name(),
                    value.number()
                ));
            }
        }
    }
    lines.sort();
    lines.join("\n") + "\n"
}

#[test]
fn the_api_changes_only_on_purpose() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/berth/v1/api.snapshot");
    let now = shape();
    if std::env::var_os("BERTH_UPDATE_API_SNAPSHOT").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let recorded = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        now, recorded,
        "the API changed; if on purpose, regenerate proto/berth/v1/api.snapshot"
    );
}
