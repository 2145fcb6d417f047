//! The server's options: keyword arguments → `ServerConfig` (every option of
//! the Rust builder, checked before any I/O).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use switchboard::{AuthConfig, JwtConfig, Server, ServerConfig};

use crate::auth::{PyAuthHook, SharedHook};
use crate::convert::{config_error, duration};

/// Validated server options. Built from keyword arguments; does no I/O.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct ServerOptions {
    pub(crate) config: ServerConfig,
    pub(crate) hook: Option<Arc<PyAuthHook>>,
}

fn get<'py>(opts: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(opts.get_item(key)?.filter(|v| !v.is_none()))
}

fn strings(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if v.is_instance_of::<pyo3::types::PyString>() {
        // A lone string is a comma-separated list, as on the command line.
        let s: String = v.extract()?;
        return Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect());
    }
    v.extract()
        .map_err(|_| PyTypeError::new_err(format!("{name}: a list of str")))
}

fn count<T: for<'a, 'py> FromPyObject<'a, 'py>>(v: &Bound<'_, PyAny>, name: &str) -> PyResult<T> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!("{name}: an int")));
    }
    v.extract()
        .map_err(|_| PyValueError::new_err(format!("{name}: a non-negative int in range")))
}

/// A PEM key: `str`/`bytes` content, or an `os.PathLike` naming a file.
fn pem(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(s.into_bytes());
    }
    if v.hasattr("__fspath__")? {
        let path: PathBuf = v.extract()?;
        return std::fs::read(&path)
            .map_err(|e| config_error(&format!("{name}: reading {}: {e}", path.display())));
    }
    Err(PyTypeError::new_err(format!(
        "{name}: PEM as str or bytes, or a path"
    )))
}

/// Every option name the server accepts (the Python layer's keyword arguments).
const OPTION_NAMES: &[&str] = &[
    "listen",
    "path",
    "max_message_bytes",
    "max_conns",
    "max_conns_per_ip",
    "max_pending_per_ip",
    "max_pending",
    "conn_rate_per_ip",
    "conn_burst_per_ip",
    "ipv6_prefix",
    "max_room_size",
    "max_rooms_per_session",
    "max_metadata_bytes",
    "max_away_per_ip",
    "max_away_per_user",
    "max_away_sessions",
    "away_replay_budget_bytes",
    "rate_limit_burst",
    "rate_limit_rps",
    "heartbeat_interval",
    "heartbeat_timeout",
    "resume_window",
    "replay_buffer_messages",
    "replay_buffer_bytes",
    "outbound_queue_bytes",
    "outbound_budget_bytes",
    "allowed_origins",
    "handshake_timeout",
    "http_write_timeout",
    "drain_timeout",
    "drain_retry_after",
    "event_buffer",
    "auth_tokens",
    "jwt_secret",
    "jwt_public_key",
    "jwt_audience",
    "jwt_issuer",
    "jwt_leeway",
    "authenticate",
    "auth_timeout",
    "tls_cert",
    "tls_key",
    "trusted_proxies",
    "turn_secret",
    "turn_urls",
    "turn_ttl",
    "redis_url",
    "redis_ca_cert",
    "demo",
    "serve_client",
    "app_types",
    "api_key",
];

#[pymethods]
impl ServerOptions {
    /// Checks every option (types, ranges, combinations) and builds the config.
    #[new]
    #[pyo3(signature = (**options))]
    fn new(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<ServerOptions> {
        let empty = PyDict::new(py);
        let opts = options.unwrap_or(&empty);
        for key in opts.keys() {
            let key: String = key.extract()?;
            if !OPTION_NAMES.contains(&key.as_str()) {
                return Err(PyTypeError::new_err(format!(
                    "unknown server option {key:?}"
                )));
            }
        }
        let mut c = ServerConfig::default();
        macro_rules! counts {
            ($($name:ident),*) => {$(
                if let Some(v) = get(opts, stringify!($name))? {
                    c.$name = count(&v, stringify!($name))?;
                }
            )*};
        }
        counts!(
            max_message_bytes,
            max_conns,
            max_conns_per_ip,
            max_pending_per_ip,
            max_pending,
            conn_rate_per_ip,
            conn_burst_per_ip,
            ipv6_prefix,
            max_room_size,
            max_rooms_per_session,
            max_metadata_bytes,
            max_away_per_ip,
            max_away_per_user,
            max_away_sessions,
            away_replay_budget_bytes,
            rate_limit_burst,
            rate_limit_rps,
            replay_buffer_messages,
            replay_buffer_bytes,
            outbound_queue_bytes,
            outbound_budget_bytes,
            event_buffer
        );
        macro_rules! durations {
            ($($name:ident),*) => {$(
                if let Some(v) = get(opts, stringify!($name))? {
                    c.$name = duration(&v, stringify!($name))?;
                }
            )*};
        }
        durations!(
            heartbeat_interval,
            heartbeat_timeout,
            resume_window,
            handshake_timeout,
            http_write_timeout,
            drain_timeout,
            drain_retry_after,
            auth_timeout
        );
        if let Some(v) = get(opts, "listen")? {
            c.listen = v.extract()?;
        }
        if let Some(v) = get(opts, "path")? {
            c.path = v.extract()?;
        }
        if let Some(v) = get(opts, "allowed_origins")? {
            c.allowed_origins = strings(&v, "allowed_origins")?;
        }
        if let Some(v) = get(opts, "api_key")? {
            c.api_key = Some(switchboard::config::ApiKey::new(v.extract::<String>()?));
        }
        if let Some(v) = get(opts, "app_types")? {
            c.app_types = strings(&v, "app_types")?;
        }
        if let Some(v) = get(opts, "trusted_proxies")? {
            c.trusted_proxies = strings(&v, "trusted_proxies")?;
        }
        if let Some(v) = get(opts, "redis_url")? {
            c.redis_url = Some(v.extract()?);
        }
        if let Some(v) = get(opts, "redis_ca_cert")? {
            c.redis_ca_cert = Some(v.extract()?);
        }
        if let Some(v) = get(opts, "demo")? {
            c.demo = v.is_truthy()?;
        }
        if let Some(v) = get(opts, "serve_client")? {
            c.serve_client = v.is_truthy()?;
        }

        // TLS: both files or neither.
        match (get(opts, "tls_cert")?, get(opts, "tls_key")?) {
            (Some(cert), Some(key)) => {
                c.tls = Some(switchboard::TlsConfig {
                    cert_path: cert.extract()?,
                    key_path: key.extract()?,
                });
            }
            (None, None) => {}
            _ => return Err(config_error("tls_cert and tls_key go together")),
        }

        // TURN: a secret and at least one URL.
        let turn_ttl = match get(opts, "turn_ttl")? {
            Some(v) => duration(&v, "turn_ttl")?,
            None => Duration::from_secs(3600),
        };
        match (get(opts, "turn_secret")?, get(opts, "turn_urls")?) {
            (Some(secret), Some(urls)) => {
                let urls = strings(&urls, "turn_urls")?;
                if urls.is_empty() {
                    return Err(config_error("turn_urls needs at least one URL"));
                }
                c.turn = Some(switchboard::TurnConfig {
                    secret: secret.extract()?,
                    urls,
                    ttl: turn_ttl,
                });
            }
            (None, None) => {}
            _ => return Err(config_error("turn_secret and turn_urls go together")),
        }

        // Authentication: at most one way.
        let mut hook = None;
        let mut ways = Vec::new();
        if let Some(v) = get(opts, "auth_tokens")? {
            let table: HashMap<String, String> = v.extract().map_err(|_| {
                PyTypeError::new_err("auth_tokens: a dict of token (str) to user id (str)")
            })?;
            c.auth = AuthConfig::Tokens(table);
            ways.push("auth_tokens");
        }
        let secret = get(opts, "jwt_secret")?;
        let public_key = get(opts, "jwt_public_key")?;
        let jwt_settings = ["jwt_audience", "jwt_issuer", "jwt_leeway"];
        if secret.is_some() || public_key.is_some() {
            let mut jwt = match (secret, public_key) {
                (Some(s), None) => JwtConfig::hs256(pem(&s, "jwt_secret")?),
                (None, Some(k)) => JwtConfig::public_key_pem(pem(&k, "jwt_public_key")?),
                _ => {
                    return Err(config_error(
                        "jwt_secret and jwt_public_key exclude each other",
                    ))
                }
            };
            if let Some(v) = get(opts, "jwt_audience")? {
                jwt.audience = Some(v.extract()?);
            }
            if let Some(v) = get(opts, "jwt_issuer")? {
                jwt.issuer = Some(v.extract()?);
            }
            if let Some(v) = get(opts, "jwt_leeway")? {
                jwt.leeway = duration(&v, "jwt_leeway")?;
            }
            c.auth = AuthConfig::Jwt(jwt);
            ways.push("jwt");
        } else {
            for name in jwt_settings {
                if get(opts, name)?.is_some() {
                    return Err(config_error(&format!(
                        "{name} needs jwt_secret or jwt_public_key"
                    )));
                }
            }
        }
        if let Some(f) = get(opts, "authenticate")? {
            if !f.is_callable() {
                return Err(PyTypeError::new_err("authenticate: a callable"));
            }
            let h = PyAuthHook::new(f.unbind(), c.auth_timeout);
            c.auth = AuthConfig::Hook(Arc::new(SharedHook(h.clone())));
            hook = Some(h);
            ways.push("authenticate");
        }
        if ways.len() > 1 {
            return Err(config_error(&format!(
                "choose one way to authenticate, not {}",
                ways.join(" and ")
            )));
        }

        let config = Server::builder()
            .config(c)
            .build()
            .map_err(|e| config_error(&e.to_string()))?
            .config()
            .clone();
        Ok(ServerOptions { config, hook })
    }

    /// The address to bind.
    #[getter]
    fn listen(&self) -> &str {
        &self.config.listen
    }

    /// The WebSocket path.
    #[getter]
    fn path(&self) -> &str {
        &self.config.path
    }

    /// Seconds an idle graceful drain may take.
    #[getter]
    fn drain_timeout(&self) -> f64 {
        self.config.drain_timeout.as_secs_f64()
    }

    /// Largest accepted message in bytes.
    #[getter]
    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    /// Heartbeat interval plus timeout, in seconds: the longest a write may take
    /// before a route-mode connection is dropped as stuck.
    #[getter]
    fn heartbeat_timeout(&self) -> f64 {
        self.config.heartbeat_timeout.as_secs_f64()
    }

    /// Whether auth is configured.
    #[getter]
    fn auth(&self) -> bool {
        self.config.auth.is_on()
    }
}
