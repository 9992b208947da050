//! The one place that builds an AWS [`aws_config::SdkConfig`].
//!
//! The workspace trims the SDK to a single rustls+ring HTTP stack (no `default-https-client`), so
//! every config **must** get an explicit HTTP client: without one the SDK panics at the first call
//! ("a http_client is required"). Everything else is the standard chain: credentials from env,
//! profile, web identity, ECS or the instance profile; region from `AWS_REGION` or the profile;
//! `AWS_ENDPOINT_URL` for S3-compatible servers (and for moto in tests: tests set only env vars,
//! the code path is the production one).

use super::RegistryOptions;
use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig};
use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};

/// The HTTPS client every AWS client in this project uses: hyper 1 + rustls + ring, trusting the
/// OS roots (`/etc/ssl/certs`).
pub fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Load the shared AWS config: the standard chain, overridden by `opts` where set.
///
/// Retries: the SDK's standard mode with 5 attempts (exponential backoff with jitter), which is
/// what absorbs throttling (`SlowDown`, `RequestLimitExceeded`) when many launches run at once.
pub async fn sdk_config(opts: &RegistryOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::standard().with_max_attempts(5));
    if let Some(region) = &opts.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &opts.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The full error text of an SDK error, its sources included (the SDK's own `Display` is one word).
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// Whether an error that never reached the server was the credential chain coming up empty.
pub fn is_credentials_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || t.contains("no providers in chain")
}
