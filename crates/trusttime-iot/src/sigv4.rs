//! SigV4-presigned URLs signed with **trusted time**, never the raw system clock: AWS IoT
//! Core's MQTT over WebSocket (`wss://ENDPOINT/mqtt?X-Amz-...`) needs the signing time within
//! 15 minutes of AWS's; trusttime refuses to sign when its uncertainty exceeds the SigV4
//! budget (5 minutes by default).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use trusttime_core::{Human, Purpose, UnixTime};
use trusttime_tls::TrustedClock;

use crate::ConnectError;

/// AWS credentials (from the device's provisioning, e.g. an IoT credentials-provider role).
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What to presign.
#[derive(Debug, Clone)]
pub struct Presign<'a> {
    /// Full URL without the signature (e.g. `https://host/mqtt`).
    pub url: &'a str,
    /// AWS region.
    pub region: &'a str,
    /// Service name (`iotdevicegateway` for AWS IoT Core).
    pub service: &'a str,
    /// How long the URL stays valid.
    pub expires_in: Duration,
    /// S3-style: `UNSIGNED-PAYLOAD`, single percent-encoding, no path normalisation.
    pub s3_style: bool,
    /// Leave the session token out of the signature (AWS IoT appends it unsigned).
    pub token_after_signing: bool,
}

/// Presigns at an explicit time (the caller vouches for it).
///
/// # Errors
/// [`ConnectError::Config`] when the URL or parameters cannot be signed.
pub fn presign_at(
    p: &Presign<'_>,
    creds: &AwsCredentials,
    at: SystemTime,
) -> Result<String, ConnectError> {
    let identity = Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        creds.session_token.clone(),
        None,
        "trusttime",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(p.expires_in);
    if p.s3_style {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    if p.token_after_signing {
        settings.session_token_mode = SessionTokenMode::Exclude;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(p.region)
        .name(p.service)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| ConnectError::Config(format!("SigV4 parameters: {e}")))?
        .into();
    let body = if p.s3_style {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&[])
    };
    let req = SignableRequest::new("GET", p.url, std::iter::empty(), body)
        .map_err(|e| ConnectError::Config(format!("SigV4 request: {e}")))?;
    let (instructions, _sig) = sign(req, &params)
        .map_err(|e| ConnectError::Config(format!("SigV4: {e}")))?
        .into_parts();
    let mut url = p.url.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    for (k, v) in instructions.params() {
        url.push(sep);
        url.push_str(&format!("{}={}", enc(k), enc(v)));
        sep = '&';
    }
    Ok(url)
}

/// The AWS IoT Core MQTT-over-WebSocket URL for `endpoint` in `region`, signed at the
/// trusted time. Refused when the time is not trusted to `Purpose::SigV4`'s error.
///
/// # Errors
/// [`ConnectError::NotTrusted`] with the uncertainty and the budget, or a signing error.
pub fn iot_websocket_url(
    endpoint: &str,
    region: &str,
    creds: &AwsCredentials,
    clock: &dyn TrustedClock,
) -> Result<String, ConnectError> {
    iot_websocket_url_on_port(endpoint, 443, region, creds, clock)
}

/// [`iot_websocket_url`] for a port other than 443 (the port is part of the signed host).
///
/// # Errors
/// As [`iot_websocket_url`].
pub fn iot_websocket_url_on_port(
    endpoint: &str,
    port: u16,
    region: &str,
    creds: &AwsCredentials,
    clock: &dyn TrustedClock,
) -> Result<String, ConnectError> {
    let r = clock.read();
    let budget = Purpose::SigV4.default_max_error();
    if !r.is_trusted_within(budget) {
        return Err(ConnectError::NotTrusted(format!(
            "refusing to sign: the time's uncertainty is {} ({}), more than SigV4's budget of {}",
            if r.trusted.provenance == trusttime_core::Provenance::Floor {
                "unbounded".to_owned()
            } else {
                Human(r.trusted.uncertainty()).to_string()
            },
            r.trusted.provenance.describe(),
            Human(budget)
        )));
    }
    let at = to_system(r.trusted.interval.midpoint());
    let url = if port == 443 {
        format!("https://{endpoint}/mqtt")
    } else {
        format!("https://{endpoint}:{port}/mqtt")
    };
    let p = Presign {
        url: &url,
        region,
        service: "iotdevicegateway",
        expires_in: Duration::from_secs(300),
        s3_style: false,
        token_after_signing: true,
    };
    presign_at(&p, creds, at).map(|u| u.replacen("https://", "wss://", 1))
}

fn to_system(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trusttime_core::{Provenance, SignedDuration, TimeInterval, TrustedTime};
    use trusttime_tls::{ClockReading, FixedClock};

    /// The presigned-URL example of the Amazon S3 API reference ("Authenticating Requests:
    /// Using Query Parameters (AWS Signature Version 4)").
    #[test]
    fn published_s3_presign_vector() {
        let creds = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let p = Presign {
            url: "https://examplebucket.s3.amazonaws.com/test.txt",
            region: "us-east-1",
            service: "s3",
            expires_in: Duration::from_secs(86_400),
            s3_style: true,
            token_after_signing: false,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        let url = presign_at(&p, &creds, at).unwrap();
        assert!(url.contains("X-Amz-Date=20130524T000000Z"), "{url}");
        assert!(
            url.contains(
                "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            ),
            "{url}"
        );
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
    }

    fn clock(err_s: i64, provenance: Provenance) -> FixedClock {
        let t = UnixTime::from_secs(1_795_000_000);
        FixedClock(ClockReading {
            device: t,
            trusted: TrustedTime {
                interval: TimeInterval::around(t, SignedDuration::from_secs(err_s)),
                provenance,
            },
        })
    }

    #[test]
    fn signs_with_trusted_time_and_refuses_beyond_the_budget() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("tok/en".into()),
        };
        let url = iot_websocket_url(
            "abc-ats.iot.eu-west-1.amazonaws.com",
            "eu-west-1",
            &creds,
            &clock(2, Provenance::Ntp),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            ),
            "{url}"
        );
        // 1_795_000_000 = 2026-11-18T11:06:40Z: the trusted midpoint, not this machine's clock.
        assert!(url.contains("X-Amz-Date=20261118T110640Z"), "{url}");
        assert!(url.contains("iotdevicegateway"), "{url}");
        assert!(url.ends_with("&X-Amz-Security-Token=tok%2Fen"), "{url}");
        let e = iot_websocket_url("h", "eu-west-1", &creds, &clock(600, Provenance::Manual))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refusing to sign") && e.contains("5 minutes"),
            "{e}"
        );
        let floor = FixedClock(ClockReading::untrusted(
            UnixTime::from_secs(946_684_800),
            UnixTime::from_secs(1_790_000_000),
        ));
        assert!(iot_websocket_url("h", "eu-west-1", &creds, &floor)
            .unwrap_err()
            .to_string()
            .contains("unbounded"));
    }
}
