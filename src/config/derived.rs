//! What the serve settings make: checked once (`validate`), then turned
//! into the tokens, health policy and operator webhook the process runs with.

use super::*;

impl ServeConfig {
    /// The settings tests and embedders start from: everything at its
    /// default, tokens given.
    pub fn for_tests(admin: &str, ingest: &str) -> Self {
        let cli = Cli::try_parse_from([
            "callhook",
            "serve",
            "--admin-token",
            admin,
            "--ingest-token",
            ingest,
        ])
        .expect("static arguments parse");
        match cli.command {
            Command::Serve(c) => *c,
            Command::Migrate(_) | Command::RotateSecretKey(_) => unreachable!("parsed serve"),
        }
    }

    /// An endpoint's in-flight cap when it sets none:
    /// `CALLHOOK_ENDPOINT_MAX_IN_FLIGHT`, else this dispatcher's places
    /// among the unrecorded (`callhook_dispatch::default_endpoint_cap`).
    pub fn endpoint_cap(&self) -> i32 {
        self.endpoint_max_in_flight
            .unwrap_or_else(|| callhook_dispatch::default_endpoint_cap(self.concurrency))
    }

    /// How long a delivery may wait for a worker or its host's turn: a
    /// second, less if the lease leaves less room beside the request (a
    /// handed-off delivery's lease started at insert).
    pub fn seat_wait(&self) -> Duration {
        self.seat_wait.unwrap_or_else(|| {
            Duration::from_secs(1).min(self.lease.saturating_sub(self.request_timeout) / 2)
        })
    }

    /// Checks what clap cannot: one line saying what to set.
    pub fn validate(&self) -> Result<(), String> {
        if self.db.database_url.is_none() {
            return Err("DATABASE_URL is not set: set it to the Postgres URL, e.g. postgres://postgres@127.0.0.1:5432/callhook".into());
        }
        if self.role.serves_api() {
            self.check_tokens()?;
        }
        if self.lease <= self.request_timeout {
            return Err(format!(
                "CALLHOOK_LEASE ({:?}) must be longer than CALLHOOK_REQUEST_TIMEOUT ({:?}), or slow requests would be sent twice",
                self.lease, self.request_timeout
            ));
        }
        if self.reservation_hold.is_zero() {
            return Err("CALLHOOK_RESERVATION_HOLD must be longer than 0s, e.g. 150s".into());
        }
        if self.max_inflight_requests == 0 {
            return Err("CALLHOOK_MAX_INFLIGHT_REQUESTS must be at least 1".into());
        }
        if self.http_header_timeout.is_zero() || self.http_request_timeout.is_zero() {
            return Err(
                "CALLHOOK_HTTP_HEADER_TIMEOUT and CALLHOOK_HTTP_REQUEST_TIMEOUT must be above zero"
                    .into(),
            );
        }
        if self.concurrency == 0 || self.per_host_concurrency == 0 {
            return Err(
                "CALLHOOK_CONCURRENCY and CALLHOOK_PER_HOST_CONCURRENCY must be at least 1".into(),
            );
        }
        if self.failing_after == 0 || self.drain_rate == 0 {
            return Err("CALLHOOK_FAILING_AFTER and CALLHOOK_DRAIN_RATE must be at least 1".into());
        }
        if self.probe_interval.is_zero() || self.pause_after > self.disable_after {
            return Err(format!(
                "CALLHOOK_PROBE_INTERVAL must be above zero and CALLHOOK_PAUSE_AFTER ({:?}) at most CALLHOOK_DISABLE_AFTER ({:?})",
                self.pause_after, self.disable_after
            ));
        }
        self.operator_webhook()?;
        self.keys.sealer()?;
        Ok(())
    }

    /// The admin tokens with their names (`CALLHOOK_ADMIN_TOKEN` as
    /// `admin`, then `CALLHOOK_ADMIN_TOKENS`).
    pub fn named_admin_tokens(&self) -> Result<Vec<callhook_api::NamedToken>, String> {
        named_tokens(
            "admin",
            self.admin_token.as_ref(),
            self.admin_tokens.as_ref(),
            "CALLHOOK_ADMIN_TOKENS",
        )
    }

    /// The ingest tokens with their names.
    pub fn named_ingest_tokens(&self) -> Result<Vec<callhook_api::NamedToken>, String> {
        named_tokens(
            "ingest",
            self.ingest_token.as_ref(),
            self.ingest_tokens.as_ref(),
            "CALLHOOK_INGEST_TOKENS",
        )
    }

    /// When an endpoint changes state.
    pub fn health_policy(&self) -> callhook_core::HealthPolicy {
        callhook_core::HealthPolicy {
            failing_after: self.failing_after,
            pause_after: self.pause_after,
            probe_interval: self.probe_interval,
            disable_after: self.disable_after,
        }
    }

    /// Where operator events go, checked: the URL and its secret come
    /// together.
    pub fn operator_webhook(&self) -> Result<Option<callhook_dispatch::OperatorWebhook>, String> {
        let url = self
            .operator_webhook_url
            .as_deref()
            .filter(|u| !u.trim().is_empty());
        let secret = self.operator_webhook_secret.as_ref();
        match (url, secret) {
            (None, None) => Ok(None),
            (Some(_), None) => Err("CALLHOOK_OPERATOR_WEBHOOK_URL is set but CALLHOOK_OPERATOR_WEBHOOK_SECRET is not: set it to a whsec_… secret".into()),
            (None, Some(_)) => Err("CALLHOOK_OPERATOR_WEBHOOK_SECRET is set but CALLHOOK_OPERATOR_WEBHOOK_URL is not".into()),
            (Some(url), Some(secret)) => {
                let url = callhook_core::WebhookUrl::parse(url, "CALLHOOK_OPERATOR_WEBHOOK_URL")
                    .map_err(|e| format!("CALLHOOK_OPERATOR_WEBHOOK_URL: {}", e.message))?;
                let secret = callhook_core::SigningSecret::parse(secrecy::ExposeSecret::expose_secret(secret))
                    .map_err(|_| "CALLHOOK_OPERATOR_WEBHOOK_SECRET must be a whsec_… secret (whsec_ and base64)".to_owned())?;
                Ok(Some(callhook_dispatch::OperatorWebhook {
                    url: url.into_string(),
                    secret,
                }))
            }
        }
    }
}

/// `single` (named `default_name`) and the `name:token,…` list, checked:
/// names and tokens not blank, no token twice.
/// The shortest token accepted: a guess must not be cheap.
const MIN_TOKEN_LEN: usize = 16;

impl ServeConfig {
    /// Both APIs have tokens, each at least [`MIN_TOKEN_LEN`] characters,
    /// and no admin token is also an ingest token (the ingest side would
    /// hold the admin API's key).
    fn check_tokens(&self) -> Result<(), String> {
        use secrecy::ExposeSecret as _;
        let admin = self.named_admin_tokens()?;
        let ingest = self.named_ingest_tokens()?;
        for (name, tokens) in [
            ("CALLHOOK_ADMIN_TOKEN", &admin),
            ("CALLHOOK_INGEST_TOKEN", &ingest),
        ] {
            if tokens.is_empty() {
                return Err(format!("{name} is not set (nor {name}S): set it to a long random string (e.g. `openssl rand -hex 32`)"));
            }
            if let Some(t) = tokens
                .iter()
                .find(|t| t.token.expose_secret().chars().count() < MIN_TOKEN_LEN)
            {
                return Err(format!(
                    "{name}: the token named {:?} is shorter than {MIN_TOKEN_LEN} characters; use a long random string (e.g. `openssl rand -hex 32`)",
                    t.name
                ));
            }
        }
        let same = admin.iter().find(|a| {
            ingest
                .iter()
                .any(|i| i.token.expose_secret() == a.token.expose_secret())
        });
        if let Some(a) = same {
            return Err(format!(
                "the admin token named {:?} is also an ingest token: give the two APIs different tokens",
                a.name
            ));
        }
        Ok(())
    }
}

fn named_tokens(
    default_name: &str,
    single: Option<&SecretString>,
    list: Option<&SecretString>,
    setting: &str,
) -> Result<Vec<callhook_api::NamedToken>, String> {
    use secrecy::ExposeSecret as _;
    let mut out = Vec::new();
    if let Some(t) = single.filter(|t| !t.expose_secret().trim().is_empty()) {
        out.push(callhook_api::NamedToken {
            name: default_name.to_owned(),
            token: SecretString::from(t.expose_secret().trim().to_owned()),
        });
    }
    if let Some(list) = list {
        for item in list
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let Some((name, token)) = item.split_once(':') else {
                return Err(format!("{setting}: each item must be name:token"));
            };
            let (name, token) = (name.trim(), token.trim());
            if name.is_empty() || token.is_empty() {
                return Err(format!(
                    "{setting}: each item must be name:token, neither blank"
                ));
            }
            out.push(callhook_api::NamedToken {
                name: name.to_owned(),
                token: SecretString::from(token.to_owned()),
            });
        }
    }
    for (i, a) in out.iter().enumerate() {
        if out[..i]
            .iter()
            .any(|b| b.token.expose_secret() == a.token.expose_secret())
        {
            return Err(format!("{setting}: token named {} is listed twice", a.name));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(admin: &str, ingest: &str) -> ServeConfig {
        let mut c = ServeConfig::for_tests(admin, ingest);
        c.db.database_url = Some("postgres://127.0.0.1/x".to_owned().into());
        c
    }

    #[test]
    fn tokens_must_be_long_and_the_two_apis_must_differ() {
        assert_eq!(
            config("a-long-admin-token", "a-long-ingest-token").validate(),
            Ok(())
        );
        let short = config("a", "a-long-ingest-token").validate().unwrap_err();
        assert!(
            short.contains("CALLHOOK_ADMIN_TOKEN") && short.contains("16"),
            "{short}"
        );
        let same = config("the-same-long-token", "the-same-long-token")
            .validate()
            .unwrap_err();
        assert!(same.contains("also an ingest token"), "{same}");
    }

    #[test]
    fn the_endpoint_cap_unset_is_four_times_the_concurrency_and_set_is_what_it_says() {
        let mut c = ServeConfig::for_tests("admin-token-long-enough", "ingest-token-long-enough");
        assert_eq!(c.endpoint_cap(), 256, "the default 64 seats");
        c.concurrency = 16;
        assert_eq!(c.endpoint_cap(), 64, "16 × 4 places");
        c.endpoint_max_in_flight = Some(5);
        assert_eq!(c.endpoint_cap(), 5);
    }
}
