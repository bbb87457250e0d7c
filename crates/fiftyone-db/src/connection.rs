//! Where FiftyOne's database is, found the way FiftyOne's own client finds
//! it (`fiftyone.core.odm.database.establish_db_conn`):
//!
//! 1. `FIFTYONE_DATABASE_URI`, else `database_uri` in FiftyOne's config file
//!    (`FIFTYONE_CONFIG_PATH`, else `~/.fiftyone/config.json`);
//! 2. else `FIFTYONE_PRIVATE_DATABASE_PORT` (set in the processes a FiftyOne
//!    session starts) on 127.0.0.1;
//! 3. else the private `mongod` a running FiftyOne session started for its
//!    default setup: the `mongod` process whose `--dbpath` is FiftyOne's
//!    `database_dir` (`FIFTYONE_DATABASE_DIR`, the config file, else
//!    `~/.fiftyone/var/lib/mongo`), at the port it listens on (FiftyOne
//!    starts it with `--port 0`; `/proc` tells which).
//!
//! The database's name is `FIFTYONE_DATABASE_NAME`, the config file's
//! `database_name`, else `fiftyone`. The config file is read as a file zoo
//! did not write: a regular file, within a byte cap, JSON with string
//! values where strings belong.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::FiftyOneError;

/// The largest FiftyOne config file read (1 MiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The largest `/proc` file read (a process's command line, the TCP table).
const MAX_PROC_BYTES: u64 = 16 << 20;

/// Where FiftyOne's database is and how zoo found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connection {
    /// The MongoDB URI (`mongodb://...` or `mongodb+srv://...`).
    pub uri: String,
    /// The database's name in that server (FiftyOne's `database_name`).
    pub database: String,
    /// How it was found, for messages: `FIFTYONE_DATABASE_URI`, the config
    /// file, FiftyOne's private `mongod`, ...
    pub found_by: String,
}

/// The settings that decide the connection, read from the environment and
/// FiftyOne's config file.
#[derive(Debug, Default, Clone)]
struct Settings {
    uri: Option<(String, String)>,
    name: Option<String>,
    private_port: Option<String>,
    database_dir: Option<PathBuf>,
}

impl Connection {
    /// A connection to `uri`, database `database` (as named by the caller).
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            found_by: "given".to_owned(),
        }
    }

    /// FiftyOne's database, found as FiftyOne's own client finds it (see
    /// the module docs); an error saying how to start one when none is
    /// configured or running.
    pub fn from_env() -> Result<Self, FiftyOneError> {
        let home = dirs::home_dir();
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let config_path = env("FIFTYONE_CONFIG_PATH")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(".fiftyone/config.json")));
        let settings = settings(&env, config_path.as_deref(), home.as_deref())?;
        resolve(settings, Path::new("/proc"))
    }
}

/// The settings from `env` and the config file at `config_path` (absent is
/// fine; unreadable or malformed is an error naming it).
fn settings(
    env: &dyn Fn(&str) -> Option<String>,
    config_path: Option<&Path>,
    home: Option<&Path>,
) -> Result<Settings, FiftyOneError> {
    let config = match config_path {
        Some(path) if path.exists() => read_config(path)?,
        _ => serde_json::Map::new(),
    };
    let from_config = |key: &str| -> Result<Option<String>, FiftyOneError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
            Some(Value::String(_)) => Ok(None),
            Some(other) => Err(FiftyOneError::Config {
                path: config_path.map(Path::to_path_buf).unwrap_or_default(),
                message: format!("`{key}` is {other}, not a string"),
            }),
        }
    };
    let config_name = || {
        config_path.map_or_else(
            || "FiftyOne's config file".to_owned(),
            |path| format!("`{}`", path.display()),
        )
    };
    let uri = match env("FIFTYONE_DATABASE_URI") {
        Some(uri) => Some((uri, "FIFTYONE_DATABASE_URI".to_owned())),
        None => from_config("database_uri")?
            .map(|uri| (uri, format!("`database_uri` in {}", config_name()))),
    };
    let name = match env("FIFTYONE_DATABASE_NAME") {
        Some(name) => Some(name),
        None => from_config("database_name")?,
    };
    let database_dir = match env("FIFTYONE_DATABASE_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => from_config("database_dir")?.map(PathBuf::from),
    }
    .or_else(|| home.map(|home| home.join(".fiftyone/var/lib/mongo")));
    Ok(Settings {
        uri,
        name,
        private_port: env("FIFTYONE_PRIVATE_DATABASE_PORT"),
        database_dir,
    })
}

/// FiftyOne's config file: a JSON object.
fn read_config(path: &Path) -> Result<serde_json::Map<String, Value>, FiftyOneError> {
    let error = |message: String| FiftyOneError::Config {
        path: path.to_path_buf(),
        message,
    };
    let bytes =
        zoo_fs::read_untrusted(path, MAX_CONFIG_BYTES).map_err(|err| error(err.to_string()))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error("it is not a JSON object".to_owned())),
        Err(err) => Err(error(format!("it is not valid JSON: {err}"))),
    }
}

/// The connection the settings name, looking for FiftyOne's private
/// `mongod` under `proc` when they name none.
fn resolve(settings: Settings, proc: &Path) -> Result<Connection, FiftyOneError> {
    let database = settings.name.unwrap_or_else(|| "fiftyone".to_owned());
    if let Some((uri, found_by)) = settings.uri {
        return Ok(Connection {
            uri,
            database,
            found_by,
        });
    }
    if let Some(port) = settings.private_port {
        let port: u16 = port.parse().map_err(|_| {
            FiftyOneError::NoDatabase(format!(
                "FIFTYONE_PRIVATE_DATABASE_PORT is `{}`, not a port number",
                port.escape_debug()
            ))
        })?;
        return Ok(Connection {
            uri: format!("mongodb://127.0.0.1:{port}"),
            database,
            found_by: "FIFTYONE_PRIVATE_DATABASE_PORT".to_owned(),
        });
    }
    let dir = settings.database_dir.unwrap_or_default();
    match private_mongod_port(proc, &dir) {
        Some(port) => Ok(Connection {
            uri: format!("mongodb://127.0.0.1:{port}"),
            database,
            found_by: format!(
                "the `mongod` a FiftyOne session runs on `{}`",
                dir.display()
            ),
        }),
        None => Err(FiftyOneError::NoDatabase(format!(
            "FIFTYONE_DATABASE_URI is not set, FiftyOne's config file names no `database_uri`, and no FiftyOne session's `mongod` is running on `{}`. Either start a FiftyOne session (in Python: `import fiftyone as fo; session = fo.launch_app()`, or `fiftyone app launch`) and run zoo while it is open, or run a `mongod` yourself (`mongod --dbpath DIR --port 27017`) and set FIFTYONE_DATABASE_URI=mongodb://127.0.0.1:27017 for both FiftyOne and zoo",
            dir.display()
        ))),
    }
}

/// Reads a `/proc` file within [`MAX_PROC_BYTES`].
fn read_proc(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs_err::File::open(path)
        .ok()?
        .take(MAX_PROC_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// The TCP port the `mongod` serving `database_dir` listens on, if one
/// runs (and `/proc` lets this user see it).
fn private_mongod_port(proc: &Path, database_dir: &Path) -> Option<u16> {
    let entries = fs_err::read_dir(proc).ok()?;
    for entry in entries.flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(cmdline) = read_proc(&entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_mongod = args
            .first()
            .is_some_and(|program| program.ends_with(b"mongod"));
        let serves = args.windows(2).any(|pair| {
            pair[0] == b"--dbpath" && Path::new(&*bytes_to_os(pair[1])) == database_dir
        });
        if !(is_mongod && serves) {
            continue;
        }
        let fixed = args
            .windows(2)
            .find(|pair| pair[0] == b"--port")
            .and_then(|pair| std::str::from_utf8(pair[1]).ok()?.parse::<u16>().ok())
            .filter(|&port| port != 0);
        if let Some(port) = fixed {
            return Some(port);
        }
        if let Some(port) = listening_port(proc, &entry.path()) {
            return Some(port);
        }
    }
    None
}

fn bytes_to_os(bytes: &[u8]) -> std::borrow::Cow<'_, std::ffi::OsStr> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(std::ffi::OsStr::from_bytes(bytes))
}

/// The port of a listening TCP socket the process at `process` holds.
fn listening_port(proc: &Path, process: &Path) -> Option<u16> {
    let inodes: Vec<String> = fs_err::read_dir(process.join("fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| {
            let target = fs_err::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    for table in ["net/tcp", "net/tcp6"] {
        let Some(text) = read_proc(&proc.join(table)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (column 9).
            let (Some(local), Some(state), Some(inode)) =
                (columns.get(1), columns.get(3), columns.get(9))
            else {
                continue;
            };
            if *state != "0A" || !inodes.iter().any(|held| held == inode) {
                continue;
            }
            let port = local.rsplit_once(':')?.1;
            return u16::from_str_radix(port, 16).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_environment_wins_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        fs_err::write(
            &config,
            r#"{"database_uri": "mongodb://config:1", "database_name": "mine"}"#,
        )
        .unwrap();
        let env = env_of(&[("FIFTYONE_DATABASE_URI", "mongodb://env:2")]);
        let found = resolve(
            settings(&env, Some(&config), None).unwrap(),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(found.uri, "mongodb://env:2");
        assert_eq!(found.database, "mine");
        assert_eq!(found.found_by, "FIFTYONE_DATABASE_URI");

        let found = resolve(
            settings(&env_of(&[]), Some(&config), None).unwrap(),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(found.uri, "mongodb://config:1");
        assert!(
            found.found_by.contains("database_uri"),
            "{}",
            found.found_by
        );
    }

    #[test]
    fn a_bad_config_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        fs_err::write(&config, r#"{"database_uri": 7}"#).unwrap();
        let error = settings(&env_of(&[]), Some(&config), None).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("config.json") && message.contains("database_uri"),
            "{message}"
        );
        fs_err::write(&config, "not json").unwrap();
        let message = settings(&env_of(&[]), Some(&config), None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("not valid JSON"), "{message}");
    }

    #[test]
    fn the_private_port_and_the_default_name() {
        let env = env_of(&[("FIFTYONE_PRIVATE_DATABASE_PORT", "4242")]);
        let found = resolve(
            settings(&env, None, None).unwrap(),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(found.uri, "mongodb://127.0.0.1:4242");
        assert_eq!(found.database, "fiftyone");
        let env = env_of(&[("FIFTYONE_PRIVATE_DATABASE_PORT", "x")]);
        assert!(
            resolve(
                settings(&env, None, None).unwrap(),
                Path::new("/nonexistent")
            )
            .is_err()
        );
    }

    #[test]
    fn nothing_running_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&env_of(&[]), None, Some(dir.path())).unwrap();
        let message = resolve(settings, dir.path()).unwrap_err().to_string();
        assert!(message.contains("FIFTYONE_DATABASE_URI"), "{message}");
        assert!(message.contains("fo.launch_app()"), "{message}");
        assert!(message.contains(".fiftyone/var/lib/mongo"), "{message}");
    }

    #[test]
    fn a_private_mongod_is_found_by_its_dbpath() {
        // A fake `/proc`: one process whose command line is FiftyOne's
        // `mongod --dbpath DIR --port 0`, holding socket inode 777, which
        // the TCP table lists as listening on port 0x9C41 (40001).
        let proc = tempfile::tempdir().unwrap();
        let process = proc.path().join("4321");
        fs_err::create_dir_all(process.join("fd")).unwrap();
        fs_err::write(
            process.join("cmdline"),
            b"/x/fiftyone/db/bin/mongod\0--dbpath\0/home/u/.fiftyone/var/lib/mongo\0--port\x000\0",
        )
        .unwrap();
        std::os::unix::fs::symlink("socket:[777]", process.join("fd/3")).unwrap();
        fs_err::create_dir_all(proc.path().join("net")).unwrap();
        fs_err::write(
            proc.path().join("net/tcp"),
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:9C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0\n",
        )
        .unwrap();
        let port = private_mongod_port(proc.path(), Path::new("/home/u/.fiftyone/var/lib/mongo"));
        assert_eq!(port, Some(40001));
        assert_eq!(
            private_mongod_port(proc.path(), Path::new("/elsewhere")),
            None
        );
    }
}
