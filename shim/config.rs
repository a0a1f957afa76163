//! Where berthd listens. containerd 1.6 hands a shim other than runc's only two runtime
//! options, `TypeUrl` and `ConfigPath` (containerd's `runtimeoptions.v1.Options`), so the
//! socket is read from the shim config file `ConfigPath` names (`ctr run
//! --runtime-config-path FILE`, or `ConfigPath` under the CRI runtime's `options`), else
//! from `BERTH_SOCKET` in the shim's environment (containerd passes its own on), else it is
//! berthd's default.
use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use serde::Deserialize;

/// berthd's default `--socket`.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// The type of the options containerd sends a runtime that is not runc.
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("runtime options of type {0:?} are not berth's: give a ConfigPath (runtimeoptions.v1.Options) or none")]
    ForeignOptions(String),
    #[error("cannot decode the runtime options: {0}")]
    Options(#[from] prost::DecodeError),
    #[error("cannot read the shim config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shim config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("shim config {path}: socket must be an absolute path, not {socket:?}")]
    RelativeSocket { path: PathBuf, socket: PathBuf },
}

/// containerd's `runtimeoptions.v1.Options`, with its field numbers.
#[derive(Clone, PartialEq, prost::Message)]
struct RuntimeOptions {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(string, tag = "2")]
    config_path: String,
}

/// The shim config file: TOML, `socket = "/run/berth/berth.sock"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShimConfig {
    socket: Option<PathBuf>,
}

/// The berthd socket for a task created with these runtime options.
pub fn berthd_socket(options: Option<&Any>) -> Result<PathBuf, ConfigError> {
    let environment = std::env::var_os("BERTH_SOCKET").map(PathBuf::from);
    match config_path(options)? {
        Some(path) => Ok(read_config(&path)?
            .or(environment)
            .unwrap_or_else(|| DEFAULT_SOCKET.into())),
        None => Ok(environment.unwrap_or_else(|| DEFAULT_SOCKET.into())),
    }
}

fn config_path(options: Option<&Any>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(options) = options.filter(|any| !any.type_url.is_empty()) else {
        return Ok(None);
    };
    // containerd's typeurl writes the bare message name; other writers prefix a host.
    if options.type_url.rsplit('/').next() != Some(RUNTIME_OPTIONS_TYPE) {
        return Err(ConfigError::ForeignOptions(options.type_url.clone()));
    }
    let decoded: RuntimeOptions = prost::Message::decode(options.value.as_slice())?;
    Ok((!decoded.config_path.is_empty()).then(|| decoded.config_path.into()))
}

fn read_config(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: ShimConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    match config.socket {
        Some(socket) if socket.is_relative() => Err(ConfigError::RelativeSocket {
            path: path.to_owned(),
            socket,
        }),
        socket => Ok(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(config_path: &str) -> Any {
        Any {
            type_url: RUNTIME_OPTIONS_TYPE.into(),
            value: prost::Message::encode_to_vec(&RuntimeOptions {
                type_url: String::new(),
                config_path: config_path.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_config_file_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.toml");
        std::fs::write(&path, "socket = \"/run/elsewhere/berth.sock\"\n").unwrap();
        let socket = berthd_socket(Some(&options(path.to_str().unwrap()))).unwrap();
        assert_eq!(socket, Path::new("/run/elsewhere/berth.sock"));
    }

    #[test]
    fn bad_config_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.toml");
        for (text, expected) in [
            ("sokcet = \"/x\"\n", "unknown field"),
            ("socket = \"relative.sock\"\n", "absolute"),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = berthd_socket(Some(&options(path.to_str().unwrap())))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains(path.to_str().unwrap()), "{error}");
        }
        let missing = dir.path().join("missing.toml");
        let error = berthd_socket(Some(&options(missing.to_str().unwrap()))).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }

    #[test]
    fn options_of_another_runtime_are_refused() {
        let runc = Any {
            type_url: "containerd.runc.v1.Options".into(),
            ..Default::default()
        };
        let error = berthd_socket(Some(&runc)).unwrap_err().to_string();
        assert!(error.contains("containerd.runc.v1.Options"), "{error}");
    }

    #[test]
    fn no_options_and_no_config_path_fall_through() {
        // BERTH_SOCKET is the caller's; only the fall-through is checked here.
        let expected = std::env::var_os("BERTH_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_SOCKET.into());
        assert_eq!(berthd_socket(None).unwrap(), expected);
        assert_eq!(berthd_socket(Some(&options(""))).unwrap(), expected);
    }
}
