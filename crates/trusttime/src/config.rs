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
//! kind = "roughtime"           # Roughtime: signed by the server's long-term key; up to 8,
//! address = "roughtime.int08h.com:2002"
//! public-key = "AW5uAoTSTDfG5NfY1bTh08GUnOqlRb+HVhbJ3ODJvsE="  # asked as one chain, in order
//!
//! [clock]
//! observe-only = false
//! drift-ppm = 50
//! step-threshold = "1s"
//!
//! [daemon]
//! state-dir = "/var/lib/trusttime"
//! control-socket = "/run/trusttime/control.sock"
//! startup-delay = "60s"
//! min-poll = 6      # log2 seconds: 64 s
//! max-poll = 10     # 1024 s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::files::Links;

use crate::spec::{pool_servers, RoughtimeSpec, ServerSpec, SourceKind, NTS_KE_PORT};

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

/// True for a DNS name or an IP address, without scheme, port or path.
#[must_use]
pub fn is_host_name(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
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
    /// Host names (or addresses) the page answers to besides the `listen` address, e.g.
    /// `["device.local"]`: a request whose `Host` is none of these is refused (a defence
    /// against DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
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
            allowed_hosts: Vec::new(),
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
    /// Upper bound of the random start-up delay (NTP Pool guidance: spread a fleet's boots);
    /// 60 s by default.
    #[serde(default = "default_startup_delay")]
    pub startup_delay: String,
    /// Lowest poll exponent (log2 s): 6..=10, i.e. 64..1024 s; down to -4 only when every
    /// source is on loopback (tests, a local lab).
    #[serde(default = "default_min_poll")]
    pub min_poll: i8,
    /// Highest poll exponent (log2 s; 10 = 1024 s): min-poll..=17.
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
/// 60 s: a fleet that powers up at once (a power cut, a firmware roll-out) then reaches each
/// pool server at no more than twice the rate of the same fleet polling every 64 s; 10 s made
/// that eight times (docs/fleet.md).
fn default_startup_delay() -> String {
    "60s".into()
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

/// Lowest `daemon.min-poll` (log2 s): 64 s, the NTP Pool's floor.
pub const MIN_POLL: i8 = 6;
/// Highest `daemon.min-poll`: 1024 s.
pub const MAX_MIN_POLL: i8 = 10;
/// Highest `daemon.max-poll` (RFC 5905's MAXPOLL): 2^17 s, about 36 hours.
pub const MAX_POLL: i8 = 17;
/// Lowest `daemon.min-poll` when every source is on loopback (tests, a local lab): 1/16 s.
pub const MIN_POLL_LOCAL: i8 = -4;
/// Longest `daemon.startup-delay`.
pub const MAX_STARTUP_DELAY: Duration = Duration::from_secs(3600);

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
    /// Parsed, but a value is wrong (or a file it names cannot be used).
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the offending key or `[[source]]` (1-based), when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

/// One step of a key path (`source[1].address`, `daemon.min-poll`), to find its line.
#[derive(Clone, Copy, Debug)]
enum Seg {
    Key(&'static str),
    Index(usize),
    /// A line already known.
    Line(usize),
}

/// A value that is wrong, and where.
type Bad = (Vec<Seg>, String);

/// The first `[[source]]` that does not deserialize on its own, with the key the error is
/// about (the one whose removal changes the error) and the message.
fn source_error(text: &str) -> Option<Bad> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let list = doc.get("source")?.as_array()?;
    for (i, v) in list.iter().enumerate() {
        let Err(e) = v.clone().try_into::<SourceConfig>() else {
            continue;
        };
        let message = format!("source {}: {}", i + 1, e.message().trim_end());
        let table = v.as_table()?;
        let culprit = if e.message().starts_with("missing field") {
            None
        } else {
            table.keys().find(|k| {
                let mut without = table.clone();
                without.remove(k.as_str());
                match toml::Value::Table(without).try_into::<SourceConfig>() {
                    Ok(_) => true,
                    Err(e2) => e2.message() != e.message(),
                }
            })
        };
        let at = culprit.and_then(|k| key_line(text, i, k)).map_or_else(
            || vec![Seg::Key("source"), Seg::Index(i)],
            |n| vec![Seg::Line(n)],
        );
        return Some((at, message));
    }
    None
}

/// The line of `key = ...` inside source `i` (the first such line after its `[[source]]`).
fn key_line(text: &str, i: usize, key: &str) -> Option<usize> {
    let start = line_of(text, &[Seg::Key("source"), Seg::Index(i)])?;
    text.lines()
        .enumerate()
        .skip(start.saturating_sub(1))
        .take_while(|(n, l)| *n + 1 == start || !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            let l = l
                .strip_prefix('"')
                .and_then(|r| r.strip_prefix(key))
                .and_then(|r| r.strip_prefix('"'))
                .or_else(|| l.strip_prefix(key));
            l.is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(n, _)| n + 1)
}

/// The 1-based line where the key at `at` (or, failing that, its closest parent) is written.
fn line_of(text: &str, at: &[Seg]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(doc.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    if let [Seg::Line(n)] = at {
        return Some(*n);
    }
    for seg in at {
        let item = match (seg, table, array) {
            (Seg::Key(k), Some(t), _) => t.get(*k),
            (Seg::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(item) = item else { break };
        // A `[[source]]` table's own span is its keys; a key's span is its value.
        span = Some(item.span());
        table = item.get_ref().as_table();
        array = item.get_ref().as_array();
    }
    let start = span?.start;
    Some(text.get(..start)?.matches('\n').count() + 1)
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
    /// The file's text (to point at lines in later checks).
    text: String,
    /// The file.
    path: PathBuf,
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
        let raw: Config = toml::from_str(text).map_err(|e| {
            // Inside a `[[source]]`, the parser's position is that of the first one: find
            // the table (and key) it is really about.
            if let Some((at, message)) = source_error(text) {
                return ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of(text, &at),
                    message,
                };
            }
            ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            }
        })?;
        if toml::de::DeTable::parse(text).is_ok_and(|t| t.get_ref().is_empty()) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                message: "the file has no settings (empty, or only comments): add at least one [[source]] (or an explicit [daemon] section to run on the RTC, persisted state and manual time alone)".into(),
            });
        }
        let mut c = raw.check().map_err(|(at, message)| ConfigError::Invalid {
            path: path.to_owned(),
            line: line_of(text, &at),
            message,
        })?;
        text.clone_into(&mut c.text);
        path.clone_into(&mut c.path);
        Ok(c)
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Checked, ConfigError> {
        let text = crate::files::read_to_string(path, crate::files::MAX_CONFIG, Links::Follow)
            .map_err(|e| ConfigError::Read {
                path: path.to_owned(),
                source: e,
            })?;
        Config::parse(&text, path)
    }

    fn check(self) -> Result<Checked, Bad> {
        use Seg::Key;
        fn source(i: usize, key: &'static str, e: impl std::fmt::Display) -> Bad {
            (
                vec![Seg::Key("source"), Seg::Index(i), Seg::Key(key)],
                format!("source {}: {e}", i + 1),
            )
        }
        let at = |path: &[Seg], message: String| -> Bad { (path.to_vec(), message) };
        let mut servers = Vec::new();
        let mut sources = Vec::new();
        let mut https_date = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceConfig::Ntp { address } => {
                    servers.push(
                        address
                            .parse::<ServerSpec>()
                            .map_err(|e| source(i, "address", e))?,
                    );
                }
                SourceConfig::Nts { address } => {
                    let spec = ServerSpec::parse_with_default_port(address, NTS_KE_PORT)
                        .map_err(|e| source(i, "address", e))?;
                    sources.push(Source {
                        kind: SourceKind::Nts,
                        spec,
                        roughtime: None,
                    });
                }
                SourceConfig::HttpsDate { url } => {
                    check_https_url(url).map_err(|e| source(i, "url", e))?;
                    https_date.push(url.clone());
                }
                SourceConfig::Roughtime {
                    address,
                    public_key,
                    protocol,
                } => {
                    let mut r: RoughtimeSpec = format!("{address}={public_key}").parse().map_err(
                        |e: crate::spec::BadRoughtimeSpec| {
                            let key = if e.to_string().contains("key") {
                                "public-key"
                            } else {
                                "address"
                            };
                            source(i, key, e)
                        },
                    )?;
                    if let Some(p) = protocol {
                        r.version =
                            crate::spec::parse_protocol(p).map_err(|e| source(i, "protocol", e))?;
                    }
                    sources.push(Source {
                        kind: SourceKind::Roughtime,
                        spec: r.server.clone(),
                        roughtime: Some(r),
                    });
                }
                SourceConfig::Pool { zone, count } => {
                    if !(1..=4).contains(count) {
                        return Err(source(
                            i,
                            "count",
                            "pool count must be 1..=4 (the pool asks vendors for at most 4)",
                        ));
                    }
                    zone.parse::<ServerSpec>()
                        .map_err(|e| source(i, "zone", format!("zone: {e}")))?;
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
                return Err(at(
                    &[Key("clock"), Key("require-authenticated")],
                    format!(
                        "clock.require-authenticated: unknown purpose `{p}` (expected \"tls\" or \"sigv4\")"
                    ),
                ));
            }
        }
        if !self.clock.require_authenticated.is_empty()
            && !sources.iter().any(|s| s.kind.is_authenticated())
        {
            return Err(at(
                &[Key("clock"), Key("require-authenticated")],
                "clock.require-authenticated needs at least one nts or roughtime source".into(),
            ));
        }
        if self.clock.allow_unauthenticated
            && self.clock.require_authenticated.iter().any(|p| p == "tls")
        {
            return Err(at(
                &[Key("clock"), Key("allow-unauthenticated")],
                "clock.allow-unauthenticated contradicts clock.require-authenticated = [\"tls\"]"
                    .into(),
            ));
        }
        let chain = trusttime_core::roughtime_source::MAX_SERVERS;
        if sources
            .iter()
            .filter(|s| s.kind == SourceKind::Roughtime)
            .count()
            > chain
        {
            return Err(at(
                &[Key("source")],
                format!("at most {chain} roughtime sources (they are asked as one chain)"),
            ));
        }
        if sources.len() > trusttime_core::select::MAX_SOURCES {
            return Err(at(
                &[Key("source")],
                format!(
                    "at most {} servers (pools count as their `count`)",
                    trusttime_core::select::MAX_SOURCES
                ),
            ));
        }
        if let Some(n) = self.clock.min_agree {
            if n == 0 || usize::from(n) > sources.len().max(1) {
                return Err(at(
                    &[Key("clock"), Key("min-agree")],
                    format!(
                        "clock.min-agree = {n} but {} source(s) are configured",
                        sources.len()
                    ),
                ));
            }
        }
        if !(1..=500_000).contains(&self.clock.drift_ppm) {
            return Err(at(
                &[Key("clock"), Key("drift-ppm")],
                "clock.drift-ppm must be 1..=500000".into(),
            ));
        }
        let d = &self.daemon;
        // 6..=10 (64..1024 s) is the documented range; faster polling is allowed only when
        // every source is on this machine (tests, a local lab), never against real servers.
        let all_local = sources.iter().all(|s| is_loopback(&s.spec))
            && https_date.iter().all(|u| {
                let authority = u.trim_start_matches("https://").split('/').next();
                authority
                    .and_then(|a| ServerSpec::parse_with_default_port(a, 443).ok())
                    .is_some_and(|spec| is_loopback(&spec))
            });
        let lowest = if all_local { MIN_POLL_LOCAL } else { MIN_POLL };
        if !(lowest..=MAX_MIN_POLL).contains(&d.min_poll) {
            return Err(at(
                &[Key("daemon"), Key("min-poll")],
                format!(
                    "daemon.min-poll = {} is out of range: {MIN_POLL}..={MAX_MIN_POLL} (log2 s: 64 s .. 1024 s){}",
                    d.min_poll,
                    if all_local {
                        format!("; {MIN_POLL_LOCAL} is the least even for sources on this machine")
                    } else {
                        format!("; below {MIN_POLL} only when every source is on loopback")
                    }
                ),
            ));
        }
        if !(d.min_poll..=MAX_POLL).contains(&d.max_poll) {
            return Err(at(
                &[Key("daemon"), Key("max-poll")],
                format!(
                    "daemon.max-poll = {} is out of range: min-poll ({}) ..= {MAX_POLL} (log2 s; 17 = 36 h)",
                    d.max_poll, d.min_poll
                ),
            ));
        }
        let step_threshold = crate::duration::parse(&self.clock.step_threshold).map_err(|e| {
            at(
                &[Key("clock"), Key("step-threshold")],
                format!("clock.step-threshold: {e}"),
            )
        })?;
        let startup_delay = crate::duration::parse(&d.startup_delay).map_err(|e| {
            at(
                &[Key("daemon"), Key("startup-delay")],
                format!("daemon.startup-delay: {e}"),
            )
        })?;
        if startup_delay > MAX_STARTUP_DELAY {
            return Err(at(
                &[Key("daemon"), Key("startup-delay")],
                "daemon.startup-delay must be at most 1h (it delays the first poll after boot)"
                    .into(),
            ));
        }
        crate::duration::parse(&self.web.cooling_off).map_err(|e| {
            at(
                &[Key("web"), Key("cooling-off")],
                format!("web.cooling-off: {e}"),
            )
        })?;
        for h in &self.web.allowed_hosts {
            if !crate::config::is_host_name(h) {
                return Err(at(
                    &[Key("web"), Key("allowed-hosts")],
                    format!(
                        "web.allowed-hosts: `{h}` is not a host name or address (no scheme, port or path)"
                    ),
                ));
            }
        }
        if let Some(r) = &self.report {
            crate::duration::parse(&r.interval).map_err(|e| {
                at(
                    &[Key("report"), Key("interval")],
                    format!("report.interval: {e}"),
                )
            })?;
            let tls = [r.ca.is_some(), r.cert.is_some(), r.key.is_some()];
            if tls.iter().any(|&x| x) && !tls.iter().all(|&x| x) {
                return Err(at(
                    &[Key("report")],
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
            text: String::new(),
            path: PathBuf::new(),
            warnings,
        })
    }
}

/// Whether a source is on this machine (a loopback address or `localhost`).
fn is_loopback(spec: &ServerSpec) -> bool {
    spec.host == "localhost"
        || spec
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Checked {
    /// Checks the files and devices the config names, as the daemon will use them: the trust
    /// anchors and the report's certificates and key exist and parse, the
    /// state directory and the control socket's directory are directories (or can be made).
    /// `Config::load` does not do this, so that `trusttime status --config` works for a user
    /// who may not read the key; the daemon and `validate-config` do.
    ///
    /// # Errors
    /// The first problem, with the line of the key that names the file.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        use Seg::Key;
        let err = |at: &[Seg], message: String| ConfigError::Invalid {
            path: self.path.clone(),
            line: line_of(&self.text, at),
            message,
        };
        let c = &self.raw;
        if let Some(p) = &c.clock.trust_anchors {
            crate::files::read_pem_certificates(p).map_err(|e| {
                err(
                    &[Key("clock"), Key("trust-anchors")],
                    format!("clock.trust-anchors {}: {e}", p.display()),
                )
            })?;
        }
        if let Some(r) = &c.report {
            #[cfg(feature = "tls")]
            for (key, p) in [("ca", &r.ca), ("cert", &r.cert)] {
                if let Some(p) = p {
                    crate::files::pem_certificates(p).map_err(|e| {
                        err(
                            &[Key("report"), Key(key)],
                            format!("report.{key} {}: {e}", p.display()),
                        )
                    })?;
                }
            }
            #[cfg(feature = "tls")]
            if let Some(p) = &r.key {
                crate::files::pem_private_key(p).map_err(|e| {
                    err(
                        &[Key("report"), Key("key")],
                        format!("report.key {}: {e}", p.display()),
                    )
                })?;
            }
            #[cfg(not(feature = "tls"))]
            if r.ca.is_some() {
                return Err(err(
                    &[Key("report"), Key("ca")],
                    "report over TLS needs the `tls` feature, which this build lacks".into(),
                ));
            }
        }
        let dir_ok = |p: &Path| -> Result<(), String> {
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(format!("{} exists and is not a directory", p.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Created at start: its nearest existing ancestor must be a directory.
                    match p.ancestors().skip(1).find(|a| a.exists()) {
                        Some(a) if !a.is_dir() => {
                            Err(format!("{} is not a directory", a.display()))
                        }
                        _ => Ok(()),
                    }
                }
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        };
        dir_ok(&c.daemon.state_dir).map_err(|e| {
            err(
                &[Key("daemon"), Key("state-dir")],
                format!("daemon.state-dir: {e}"),
            )
        })?;
        if let Some(dir) = c.daemon.control_socket.parent() {
            if !dir.as_os_str().is_empty() {
                dir_ok(dir).map_err(|e| {
                    err(
                        &[Key("daemon"), Key("control-socket")],
                        format!("daemon.control-socket: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Checks that the configured RTC (if any) can be read. Separate from
    /// [`Checked::check_files`] because the daemon runs on without an RTC (and says so in
    /// `status`), while `validate-config` reports it as an error.
    ///
    /// # Errors
    /// When the RTC cannot be read.
    pub fn check_rtc(&self) -> Result<(), ConfigError> {
        use Seg::Key;
        let err = |at: &[Seg], message: String| ConfigError::Invalid {
            path: self.path.clone(),
            line: line_of(&self.text, at),
            message,
        };
        let c = &self.raw;
        if let Some(p) = &c.clock.rtc {
            use crate::platform::Rtc;
            crate::platform::LinuxRtc::new(p).read().map_err(|e| {
                err(
                    &[Key("clock"), Key("rtc")],
                    format!(
                        "clock.rtc {}: cannot read the RTC: {e} (the daemon would run without it)",
                        p.display()
                    ),
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(feature = "tls")]
fn check_https_url(url: &str) -> Result<(), String> {
    url.parse::<crate::spec::HttpsDateSpec>().map(|_| ())
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
        let rt = |n: usize| -> String {
            (0..n)
                .map(|i| format!("[[source]]\nkind = \"roughtime\"\naddress = \"rt{i}.example:2002\"\npublic-key = \"{key}\"\n"))
                .collect()
        };
        let e = parse(&rt(9)).unwrap_err().to_string();
        assert!(e.contains("at most 8 roughtime sources"), "{e}");
        assert!(parse(&rt(8)).is_ok());
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

    /// Every error names the line of the key (or `[[source]]`) it is about, also in the
    /// second source; unknown and duplicate keys are errors.
    #[test]
    fn errors_point_at_the_exact_line() {
        let two =
            "[[source]]\nkind = \"ntp\"\naddress = \"a.example\"\n\n[[source]]\nkind = \"ntp\"\n";
        let e = parse(&format!("{two}addres = \"b.example\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("test.toml:7: source 2: unknown field `addres`"),
            "{e}"
        );
        let e = parse(&format!("{two}address = \"b.example:0\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("test.toml:7: source 2:"), "{e}");
        let e = parse("[[source]]\nkind = \"ntp\"\naddress = \"a\"\n[[source]]\nkind = \"pool\"\nzone = \"z\"\ncount = \"four\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("test.toml:7: source 2: invalid type"), "{e}");
        let e = parse("[[source]]\nkind = \"ntp\"\naddress = \"a\"\n[[source]]\nkind = \"nts\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("test.toml:4: source 2: missing field `address`"),
            "{e}"
        );
        let e = parse("# c\n[clock]\n\ndrift-ppm = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("test.toml:4: clock.drift-ppm"), "{e}");
        // Unknown keys anywhere, duplicate keys and tables.
        let e = parse("[daemon]\nmin-pol = 6\n").unwrap_err().to_string();
        assert!(
            e.contains("unknown field `min-pol`") && e.contains("line 2"),
            "{e}"
        );
        let e = parse("[clock]\ndrift-ppm = 5\ndrift-ppm = 6\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key") && e.contains("line 3"), "{e}");
        let e = parse("[clock]\ndrift-ppm = 5\n[clock]\nobserve-only = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key") && e.contains("line 3"), "{e}");
        let e = parse("[surprise]\nx = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `surprise`"), "{e}");
    }

    /// The documented poll range holds (64..1024 s for min-poll); faster polling only when
    /// every source is on this machine.
    #[test]
    fn poll_exponents_stay_in_the_documented_range() {
        let with = |src: &str, daemon: &str| {
            parse(&format!(
                "[[source]]\nkind = \"ntp\"\naddress = \"{src}\"\n[daemon]\n{daemon}\n"
            ))
        };
        for bad in [
            "min-poll = 0",
            "min-poll = 5",
            "min-poll = 11",
            "min-poll = -4",
        ] {
            let e = with("time.example", bad).unwrap_err().to_string();
            assert!(e.contains("test.toml:5: daemon.min-poll"), "{bad}: {e}");
        }
        assert!(with("time.example", "min-poll = 6\nmax-poll = 10").is_ok());
        assert!(with("time.example", "min-poll = 10\nmax-poll = 17").is_ok());
        let e = with("time.example", "max-poll = 18")
            .unwrap_err()
            .to_string();
        assert!(e.contains("daemon.max-poll"), "{e}");
        let e = with("time.example", "min-poll = 8\nmax-poll = 7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("daemon.max-poll"), "{e}");
        // Tests and labs: loopback servers may be polled fast, down to 1/16 s.
        assert!(with("127.0.0.1:11123", "min-poll = 1\nmax-poll = 3").is_ok());
        assert!(with("[::1]:11123", "min-poll = -4\nmax-poll = 3").is_ok());
        assert!(with("localhost", "min-poll = 0").is_ok());
        assert!(with("127.0.0.1", "min-poll = -5").is_err());
        let e = with("127.0.0.1", "startup-delay = \"2h\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("startup-delay"), "{e}");
    }

    #[test]
    fn an_empty_file_is_an_error_and_a_section_is_enough() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("no settings"), "{text:?}: {e}");
        }
        assert!(parse("[daemon]\n").is_ok());
    }

    /// Files the config names are checked as the daemon will use them.
    #[test]
    fn named_files_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |clock: &str| {
            parse(&format!(
                "[[source]]\nkind = \"nts\"\naddress = \"127.0.0.1\"\n[clock]\n{clock}\n[daemon]\nstate-dir = \"{}\"\n",
                dir.path().join("state").display()
            ))
            .unwrap()
        };
        let e = cfg("trust-anchors = \"/nonexistent/ca.pem\"")
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":5: clock.trust-anchors") && e.contains("No such file"),
            "{e}"
        );
        let e = cfg("trust-anchors = \"/dev/zero\"")
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = cfg(&format!("trust-anchors = \"{}\"", junk.display()))
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = cfg("rtc = \"/nonexistent/rtc9\"")
            .check_rtc()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":5: clock.rtc") && e.contains("cannot read the RTC"),
            "{e}"
        );
        // A regular file is no RTC.
        let e = cfg(&format!("rtc = \"{}\"", junk.display()))
            .check_rtc()
            .unwrap_err()
            .to_string();
        assert!(e.contains("clock.rtc"), "{e}");
        assert!(cfg("").check_files().is_ok());
        // A state directory that is a file.
        let e = parse(&format!("[daemon]\nstate-dir = \"{}\"\n", junk.display()))
            .unwrap()
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2: daemon.state-dir"), "{e}");
    }

    /// Configs assembled from real fragments (sources with wrong, missing, unknown and
    /// duplicate keys, odd quoting): the line-finding paths never panic and every error names
    /// a line inside the file.
    #[test]
    fn assembled_configs_never_panic_and_lines_stay_in_the_file() {
        const PIECES: &[&str] = &[
            "[[source]]\n",
            "kind = \"ntp\"\n",
            "kind = \"pool\"\n",
            "kind = \"nts\"\n",
            "kind = \"roughtime\"\n",
            "kind = 7\n",
            "address = \"127.0.0.1:123\"\n",
            "address = \"h:0\"\n",
            "\"address\" = \"x\"\n",
            "addres = \"x\"\n",
            "zone = \"z.example\"\n",
            "count = \"four\"\n",
            "count = 9\n",
            "public-key = \"xyz\"\n",
            "url = \"https://h/\"\n",
            "[daemon]\n",
            "min-poll = 0\n",
            "[clock]\n",
            "drift-ppm = 0\n",
            "# comment\n",
            "\n",
            "[[source]] # trailing\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut text = String::new();
            let n = 1 + (seed % 10) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
            }
            if let Err(ConfigError::Invalid {
                line: Some(line), ..
            }) = parse(&text)
            {
                assert!(line >= 1 && line <= text.lines().count(), "{line}: {text}");
            }
        }
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
