//! The configuration file (TOML). Unknown keys are errors, so a typo never silently falls
//! back to a default.
//!
//! ```toml
//! [[source]]
//! kind = "ntp"
//! address = "time1.lan:123"
//!
//! [[source]]
//! kind = "pool"
//! zone = "acme.pool.ntp.org"   # your NTP Pool vendor zone
//! count = 4
//!
//! [[source]]
//! kind = "nts"                 # NTS (RFC 8915): authenticated
//! address = "time.cloudflare.com"   # the NTS-KE server, port 4460 by default
//!
//! [[source]]
//! kind = "roughtime"           # Roughtime: signed by the server's long-term key
//! address = "roughtime.int08h.com:2002"
//! public-key = "AW5uAoTSTDfG5NfY1bTh08GUnOqlRb+HVhbJ3ODJvsE="
//!
//! [clock]
//! observe-only = false
//! drift-ppm = 50
//! step-threshold = "1s"
//!
//! [daemon]
//! state-dir = "/var/lib/trusttime"
//! control-socket = "/run/trusttime/control.sock"
//! startup-delay = "10s"
//! min-poll = 6      # log2 seconds: 64 s
//! max-poll = 10     # 1024 s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::roughtime::RoughtimeSpec;
use crate::sync::{pool_servers, ServerSpec, SourceKind, NTS_KE_PORT};

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/trusttime/trusttime.toml";

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Time sources.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Clock discipline.
    #[serde(default)]
    pub clock: ClockConfig,
    /// Daemon settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The local web page for setting the time by hand.
    #[serde(default)]
    pub web: WebConfig,
    /// Clock health reports to an MQTT broker (AWS IoT Device Shadow form by default).
    #[serde(default)]
    pub report: Option<ReportConfig>,
}

/// `[report]`: publish the daemon's clock health as JSON to an MQTT topic, on change and at an
/// interval. With `ca`, `cert` and `key` it uses mutual TLS, checked against trusted time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReportConfig {
    /// Broker host.
    pub broker: String,
    /// Broker port (8883 for TLS, 1883 plain).
    #[serde(default = "default_report_port")]
    pub port: u16,
    /// MQTT client ID (AWS IoT: the thing name).
    pub client_id: String,
    /// Thing name, substituted for `{thing}` in the topic.
    pub thing: String,
    /// Topic; default: the thing's Device Shadow update topic.
    #[serde(default = "default_report_topic")]
    pub topic: String,
    /// Publish at least this often.
    #[serde(default = "default_report_interval")]
    pub interval: String,
    /// Root CA for the broker (PEM); with `cert` and `key`, TLS is used.
    pub ca: Option<PathBuf>,
    /// Device certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Device key (PEM).
    pub key: Option<PathBuf>,
    /// Name to verify in the broker's certificate (default: `broker`).
    pub servername: Option<String>,
}

fn default_report_port() -> u16 {
    8883
}
fn default_report_topic() -> String {
    "$aws/things/{thing}/shadow/update".into()
}
fn default_report_interval() -> String {
    "5m".into()
}

/// `[web]`: off by default, loopback unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebConfig {
    /// Serve the page.
    #[serde(default)]
    pub enabled: bool,
    /// Address and port.
    #[serde(default = "default_web_listen")]
    pub listen: std::net::SocketAddr,
    /// Failed logins in a row (per address) before a cooling-off period.
    #[serde(default = "default_max_failures")]
    pub max_failed_logins: u32,
    /// Length of the cooling-off period.
    #[serde(default = "default_cooling_off")]
    pub cooling_off: String,
}

fn default_web_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8123))
}
fn default_max_failures() -> u32 {
    10
}
fn default_cooling_off() -> String {
    "5m".into()
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: false,
            listen: default_web_listen(),
            max_failed_logins: default_max_failures(),
            cooling_off: default_cooling_off(),
        }
    }
}

/// One `[[source]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// One NTP server.
    Ntp {
        /// HOST, HOST:PORT or [IPV6]:PORT.
        address: String,
    },
    /// NTP Pool servers by DNS name: `0.ZONE` .. `(count-1).ZONE`.
    Pool {
        /// The pool zone, ideally your vendor zone.
        zone: String,
        /// How many (1..=4, default 4).
        #[serde(default = "default_pool_count")]
        count: usize,
    },
    /// An NTS server (RFC 8915), by its NTS-KE address (port 4460 by default).
    Nts {
        /// HOST or HOST:PORT of the NTS-KE server.
        address: String,
    },
    /// An HTTPS URL whose `Date` header constrains every source (a source outside it is a
    /// falseticker). Asked once per polling round.
    HttpsDate {
        /// `https://HOST[:PORT]/PATH`.
        url: String,
    },
    /// A Roughtime server and its long-term public key.
    #[serde(rename_all = "kebab-case")]
    Roughtime {
        /// HOST:PORT (UDP; 2002 by default).
        address: String,
        /// The server's Ed25519 public key, hex or base64.
        public_key: String,
        /// `draft` (default) or `google`.
        #[serde(default)]
        protocol: Option<String>,
    },
}

/// One source, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its kind.
    pub kind: SourceKind,
    /// Where it is (for NTS, the NTS-KE server).
    pub spec: ServerSpec,
    /// For Roughtime, the server and its key.
    pub roughtime: Option<RoughtimeSpec>,
}

fn default_pool_count() -> usize {
    4
}

/// `[clock]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClockConfig {
    /// Never change any clock (system or RTC).
    #[serde(default)]
    pub observe_only: bool,
    /// Drift bound of the local oscillator (ppm).
    #[serde(default = "default_drift")]
    pub drift_ppm: u32,
    /// Errors larger than this are stepped once at start; smaller ones are slewed.
    #[serde(default = "default_step_threshold")]
    pub step_threshold: String,
    /// RTC device to read at boot and write after syncs (e.g. /dev/rtc0); none by default.
    #[serde(default)]
    pub rtc: Option<PathBuf>,
    /// Sources that must agree (default: 2 when 3 or more are configured).
    #[serde(default)]
    pub min_agree: Option<u8>,
    /// Allow a manual time outside a network-trusted interval when the request says `force`.
    #[serde(default)]
    pub allow_manual_force: bool,
    /// Purposes (`tls`, `sigv4`) for which only authenticated time (NTS, Roughtime) counts:
    /// until it is available, `wait --for` that purpose does not return and the daemon's TLS
    /// connections are refused.
    #[serde(default)]
    pub require_authenticated: Vec<String>,
    /// With NTS or Roughtime sources configured, TLS readiness (`wait --for tls`, the daemon's
    /// own TLS connections) requires authenticated time unless this is true: then plain NTP
    /// counts for TLS when the authenticated sources reach no consensus.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Extra trust anchors (PEM) for NTS-KE and HTTPS Date certificates, beside the Mozilla
    /// roots.
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
}

fn default_drift() -> u32 {
    50
}
fn default_step_threshold() -> String {
    "1s".into()
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            observe_only: false,
            drift_ppm: default_drift(),
            step_threshold: default_step_threshold(),
            rtc: None,
            min_agree: None,
            allow_manual_force: false,
            require_authenticated: Vec::new(),
            allow_unauthenticated: false,
            trust_anchors: None,
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// Where state is persisted.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The control socket.
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Upper bound of the random start-up delay (NTP Pool guidance: spread a fleet's boots).
    #[serde(default = "default_startup_delay")]
    pub startup_delay: String,
    /// Lowest poll exponent (log2 s; 6 = 64 s). Values below 6 are for tests only.
    #[serde(default = "default_min_poll")]
    pub min_poll: i8,
    /// Highest poll exponent (log2 s; 10 = 1024 s).
    #[serde(default = "default_max_poll")]
    pub max_poll: i8,
    /// Serve Prometheus text metrics at `http://ADDR/metrics` (loopback advised); off when unset.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/trusttime")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/trusttime/control.sock")
}
fn default_startup_delay() -> String {
    "10s".into()
}
fn default_min_poll() -> i8 {
    6
}
fn default_max_poll() -> i8 {
    10
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: default_state_dir(),
            control_socket: default_socket(),
            startup_delay: default_startup_delay(),
            min_poll: default_min_poll(),
            max_poll: default_max_poll(),
            metrics_listen: None,
        }
    }
}

/// A config that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Parsed, but a value is wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A checked config with values converted.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The plain NTP servers, pools expanded.
    pub servers: Vec<ServerSpec>,
    /// Every source in order (NTP with pools expanded, NTS, Roughtime).
    pub sources: Vec<Source>,
    /// HTTPS Date constraint URLs.
    pub https_date: Vec<String>,
    /// As written.
    pub raw: Config,
    /// `clock.step-threshold`.
    pub step_threshold: Duration,
    /// `daemon.startup-delay`.
    pub startup_delay: Duration,
    /// Things that are allowed but probably not meant (a source listed twice).
    pub warnings: Vec<String>,
}

impl Checked {
    /// The purposes for which only authenticated time counts: `clock.require-authenticated`,
    /// plus `tls` whenever an NTS or Roughtime source is configured, unless
    /// `clock.allow-unauthenticated` (no silent downgrade to plain NTP).
    #[must_use]
    pub fn require_authenticated(&self) -> Vec<String> {
        let mut v = self.raw.clock.require_authenticated.clone();
        let auth = self.sources.iter().any(|s| s.kind.is_authenticated());
        if auth && !self.raw.clock.allow_unauthenticated && !v.iter().any(|p| p == "tls") {
            v.push("tls".into());
        }
        v
    }
}

impl Config {
    /// Parses TOML text; `path` is for messages.
    ///
    /// # Errors
    /// [`ConfigError`] with line and column for syntax errors and unknown keys.
    pub fn parse(text: &str, path: &Path) -> Result<Checked, ConfigError> {
        let raw: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        raw.check(path)
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Checked, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        if meta.len() > 1 << 20 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "larger than 1 MiB".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Config::parse(&text, path)
    }

    fn check(self, path: &Path) -> Result<Checked, ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut servers = Vec::new();
        let mut sources = Vec::new();
        let mut https_date = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceConfig::Ntp { address } => {
                    servers.push(
                        address
                            .parse::<ServerSpec>()
                            .map_err(|e| bad(format!("source {}: {e}", i + 1)))?,
                    );
                }
                SourceConfig::Nts { address } => {
                    let spec = ServerSpec::parse_with_default_port(address, NTS_KE_PORT)
                        .map_err(|e| bad(format!("source {}: {e}", i + 1)))?;
                    sources.push(Source {
                        kind: SourceKind::Nts,
                        spec,
                        roughtime: None,
                    });
                }
                SourceConfig::HttpsDate { url } => {
                    check_https_url(url).map_err(|e| bad(format!("source {}: {e}", i + 1)))?;
                    https_date.push(url.clone());
                }
                SourceConfig::Roughtime {
                    address,
                    public_key,
                    protocol,
                } => {
                    let mut r: RoughtimeSpec = format!("{address}={public_key}")
                        .parse()
                        .map_err(|e| bad(format!("source {}: {e}", i + 1)))?;
                    if let Some(p) = protocol {
                        r.version = crate::roughtime::parse_protocol(p)
                            .map_err(|e| bad(format!("source {}: {e}", i + 1)))?;
                    }
                    sources.push(Source {
                        kind: SourceKind::Roughtime,
                        spec: r.server.clone(),
                        roughtime: Some(r),
                    });
                }
                SourceConfig::Pool { zone, count } => {
                    if !(1..=4).contains(count) {
                        return Err(bad(format!("source {}: pool count must be 1..=4 (the pool asks vendors for at most 4)", i + 1)));
                    }
                    zone.parse::<ServerSpec>()
                        .map_err(|e| bad(format!("source {}: zone: {e}", i + 1)))?;
                    servers.extend(pool_servers(zone, *count));
                }
            }
        }
        let mut all: Vec<Source> = servers
            .iter()
            .map(|s| Source {
                kind: SourceKind::Ntp,
                spec: s.clone(),
                roughtime: None,
            })
            .collect();
        all.extend(sources);
        // One server is one vote, however often it is listed.
        let mut warnings = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut sources = Vec::with_capacity(all.len());
        for s in all {
            if seen.insert((s.kind.as_str(), s.spec.to_string())) {
                sources.push(s);
            } else {
                warnings.push(format!(
                    "{} source {} is listed more than once; it counts once",
                    s.kind.as_str(),
                    s.spec
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| seen.insert(s.to_string()));
        for p in &self.clock.require_authenticated {
            if !matches!(p.as_str(), "tls" | "sigv4") {
                return Err(bad(format!(
                    "clock.require-authenticated: unknown purpose `{p}` (expected \"tls\" or \"sigv4\")"
                )));
            }
        }
        if !self.clock.require_authenticated.is_empty()
            && !sources.iter().any(|s| s.kind.is_authenticated())
        {
            return Err(bad(
                "clock.require-authenticated needs at least one nts or roughtime source".into(),
            ));
        }
        if self.clock.allow_unauthenticated
            && self.clock.require_authenticated.iter().any(|p| p == "tls")
        {
            return Err(bad(
                "clock.allow-unauthenticated contradicts clock.require-authenticated = [\"tls\"]"
                    .into(),
            ));
        }
        if sources.len() > trusttime_core::select::MAX_SOURCES {
            return Err(bad(format!(
                "at most {} servers",
                trusttime_core::select::MAX_SOURCES
            )));
        }
        if let Some(n) = self.clock.min_agree {
            if n == 0 || usize::from(n) > sources.len().max(1) {
                return Err(bad(format!(
                    "clock.min-agree = {n} but {} source(s) are configured",
                    sources.len()
                )));
            }
        }
        if !(1..=500_000).contains(&self.clock.drift_ppm) {
            return Err(bad("clock.drift-ppm must be 1..=500000".into()));
        }
        let d = &self.daemon;
        if !(-4..=17).contains(&d.min_poll)
            || !(-4..=17).contains(&d.max_poll)
            || d.min_poll > d.max_poll
        {
            return Err(bad(
                "daemon.min-poll and max-poll must be in -4..=17 with min-poll <= max-poll".into(),
            ));
        }
        let step_threshold = crate::duration::parse(&self.clock.step_threshold)
            .map_err(|e| bad(format!("clock.step-threshold: {e}")))?;
        let startup_delay = crate::duration::parse(&d.startup_delay)
            .map_err(|e| bad(format!("daemon.startup-delay: {e}")))?;
        crate::duration::parse(&self.web.cooling_off)
            .map_err(|e| bad(format!("web.cooling-off: {e}")))?;
        if let Some(r) = &self.report {
            crate::duration::parse(&r.interval)
                .map_err(|e| bad(format!("report.interval: {e}")))?;
            let tls = [r.ca.is_some(), r.cert.is_some(), r.key.is_some()];
            if tls.iter().any(|&x| x) && !tls.iter().all(|&x| x) {
                return Err(bad(
                    "report: give all of ca, cert and key for TLS, or none for plain MQTT".into(),
                ));
            }
        }
        Ok(Checked {
            servers,
            sources,
            https_date,
            raw: self,
            step_threshold,
            startup_delay,
            warnings,
        })
    }
}

#[cfg(feature = "tls")]
fn check_https_url(url: &str) -> Result<(), String> {
    url.parse::<crate::https_date::HttpsDateSpec>().map(|_| ())
}

#[cfg(not(feature = "tls"))]
fn check_https_url(_: &str) -> Result<(), String> {
    Err("https-date needs TLS, which this build does not have (feature `tls`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Checked, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn a_source_listed_twice_counts_once_with_a_warning() {
        let c = parse(
            "[[source]]\nkind = \"ntp\"\naddress = \"192.0.2.1\"\n[[source]]\nkind = \"ntp\"\naddress = \"192.0.2.1:123\"\n[[source]]\nkind = \"nts\"\naddress = \"192.0.2.1\"\n[[source]]\nkind = \"ntp\"\naddress = \"192.0.2.2\"\n",
        )
        .unwrap();
        assert_eq!(c.sources.len(), 3, "{:?}", c.sources);
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("ntp source 192.0.2.1 "),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn authenticated_source_kinds_parse_and_mistakes_are_named() {
        let key = "AW5uAoTSTDfG5NfY1bTh08GUnOqlRb+HVhbJ3ODJvsE=";
        let c = parse(&format!(
            "[[source]]\nkind = \"nts\"\naddress = \"time.example\"\n[[source]]\nkind = \"roughtime\"\naddress = \"rt.example:2002\"\npublic-key = \"{key}\"\n[[source]]\nkind = \"https-date\"\nurl = \"https://www.example/\"\n[clock]\nrequire-authenticated = [\"tls\"]\n"
        ))
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].kind, SourceKind::Nts);
        assert_eq!(c.sources[0].spec.port, 4460);
        assert_eq!(c.sources[1].kind, SourceKind::Roughtime);
        assert_eq!(c.https_date, ["https://www.example/"]);
        let e =
            parse("[[source]]\nkind = \"roughtime\"\naddress = \"h:1\"\npublic-key = \"xyz\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("key"), "{e}");
        let e = parse("[[source]]\nkind = \"ntp\"\naddress = \"h\"\n[clock]\nrequire-authenticated = [\"tls\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nts or roughtime"), "{e}");
        let e = parse("[[source]]\nkind = \"nts\"\naddress = \"h\"\n[clock]\nrequire-authenticated = [\"ssh\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown purpose"), "{e}");
        let e = parse("[[source]]\nkind = \"https-date\"\nurl = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(
            r#"
[[source]]
kind = "ntp"
address = "127.0.0.1:11123"
[[source]]
kind = "pool"
zone = "acme.pool.ntp.org"
count = 2
[clock]
observe-only = true
drift-ppm = 50
[daemon]
state-dir = "/tmp/x"
control-socket = "/tmp/x/c.sock"
startup-delay = "0s"
"#,
        )
        .unwrap();
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.servers[2].host, "1.acme.pool.ntp.org");
        assert!(c.raw.clock.observe_only);
        assert_eq!(c.startup_delay, Duration::ZERO);
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[clock]\nobserve_only = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `observe_only`"), "{e}");
        let e = parse("[[source]]\nkind = \"sntp\"\naddress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `sntp`"), "{e}");
        let e = parse("[[source]]\nkind = \"ntp\"\naddress = \"x:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("source 1") && e.contains("port"), "{e}");
        let e = parse("[daemon]\nmin-poll = 11\nmax-poll = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min-poll"), "{e}");
        let e = parse("[daemon]\nstartup-delay = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("startup-delay"), "{e}");
        let e = parse("[clock]\nmin-agree = 3\n[[source]]\nkind = \"ntp\"\naddress = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min-agree"), "{e}");
        assert!(parse("this is = = not toml").is_err());
    }

    #[test]
    fn random_text_never_panics() {
        let mut seed = 0x51_7cc1_b727_220au64;
        let alphabet = b"[]=\"\n kindntpsourcepool.:0123456789-_#{}ab";
        for _ in 0..3000 {
            let len = (seed % 120) as usize;
            let s: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let _ = parse(&s);
        }
    }
}
