//! The EC2 calls the conductor makes: `RunInstances` (one instance per call, so each has its own
//! user-data), `TerminateInstances` to undo a launch whose registration could not be completed,
//! and `DescribeInstances` for `conductor reap` ([`reap_client`], [`instance_states`]).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag, TagSpecification,
};
use base64::Engine;
use schemas::conductor_config::LaunchConfig;
use schemas::registry::aws;

/// Why a launch failed, and whether every other launch would fail the same way (a bad AMI,
/// missing permissions): then the remaining launches are not attempted.
#[derive(Debug)]
pub struct Ec2Error {
    pub message: String,
    pub fatal: bool,
}

impl std::fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What `RunInstances` said about the one instance it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub instance_id: String,
    /// The EC2 state (`pending`).
    pub state: String,
    /// The reservation's `OwnerId`: the account that owns the instance, as EC2 reports it.
    pub owner_id: Option<String>,
}

/// Launches instances with one config.
pub struct Launcher {
    client: Client,
    launch: LaunchConfig,
    image: String,
}

impl Launcher {
    pub fn new(sdk: &aws_config::SdkConfig, launch: LaunchConfig, image: String) -> Self {
        Launcher {
            client: Client::new(sdk),
            launch,
            image,
        }
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    /// Launch one instance tagged with `certname`. Returns its id, state and owning account.
    ///
    /// The certname is the idempotency token, so a retried request never starts a second instance.
    pub async fn run_instance(
        &self,
        certname: &str,
        user_data: &[u8],
    ) -> Result<Launched, Ec2Error> {
        let l = &self.launch;
        let mut tags = vec![Tag::builder().key("certname").value(certname).build()];
        if !l.tags.contains_key("Name") {
            tags.push(Tag::builder().key("Name").value(certname).build());
        }
        for (k, v) in &l.tags {
            tags.push(Tag::builder().key(k).value(v).build());
        }
        let mut req = self
            .client
            .run_instances()
            .image_id(&self.image)
            .instance_type(InstanceType::from(l.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(certname)
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            );
        if let Some(subnet) = &l.subnet_id {
            req = req.subnet_id(subnet);
        }
        for sg in &l.security_group_ids {
            req = req.security_group_ids(sg);
        }
        if let Some(key) = &l.key_name {
            req = req.key_name(key);
        }
        if let Some(profile) = &l.instance_profile {
            let spec = if profile.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(profile)
            } else {
                IamInstanceProfileSpecification::builder().name(profile)
            };
            req = req.iam_instance_profile(spec.build());
        }
        let out = req.send().await.map_err(|e| classify("RunInstances", e))?;
        let instance = out.instances().first().ok_or_else(|| Ec2Error {
            message: "RunInstances answered without an instance".into(),
            fatal: false,
        })?;
        let id = instance.instance_id().unwrap_or_default().to_owned();
        if id.is_empty() {
            return Err(Ec2Error {
                message: "RunInstances answered without an instance id".into(),
                fatal: false,
            });
        }
        let state = instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| "pending".into());
        Ok(Launched {
            instance_id: id,
            state,
            owner_id: out.owner_id().map(str::to_owned),
        })
    }

    /// Terminate an instance (cleanup after a failed registration update).
    pub async fn terminate(&self, instance_id: &str) -> Result<(), Ec2Error> {
        self.client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("TerminateInstances", e))?;
        Ok(())
    }
}

/// A clear message for an EC2 error, with what to do about it.
fn classify<E>(op: &str, err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = aws::error_text(&err);
    let code = err.code().unwrap_or("").to_owned();
    let detail = err.message().unwrap_or("").to_owned();
    let (hint, fatal) = match code.as_str() {
        c if c.starts_with("InvalidAMIID") => (
            "check the AMI id (--image or launch.image) and the region",
            true,
        ),
        c if c.starts_with("InvalidInstanceType") => (
            "check launch.instance_type, and that the type exists in the region",
            true,
        ),
        "InvalidParameterValue" | "InvalidParameterCombination" | "Unsupported" => (
            "check launch.instance_type and the other launch settings",
            true,
        ),
        c if c.starts_with("InvalidSubnet") => ("check launch.subnet_id and the region", true),
        c if c.starts_with("InvalidGroup") || c.starts_with("InvalidSecurityGroup") => {
            ("check launch.security_group_ids", true)
        }
        c if c.starts_with("InvalidKeyPair") => ("check launch.key_name", true),
        "UnauthorizedOperation" | "AuthFailure" | "OptInRequired" | "Blocked" => (
            "the credentials in use need ec2:RunInstances, ec2:CreateTags and iam:PassRole for the instance profile",
            true,
        ),
        "RequestLimitExceeded" | "Throttling" => (
            "EC2 throttled the launches beyond the SDK's retries; lower `concurrency:`",
            false,
        ),
        "InsufficientInstanceCapacity" | "InstanceLimitExceeded" | "VcpuLimitExceeded" => (
            "EC2 has no capacity or your quota is used up; try another instance type or subnet, or raise the quota",
            true,
        ),
        _ => ("", false),
    };
    if !code.is_empty() {
        let mut message = format!("EC2 refused {op}: {code}: {detail}");
        if !hint.is_empty() {
            message.push_str(&format!(" ({hint})"));
        }
        return Ec2Error { message, fatal };
    }
    match &err {
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() && aws::is_credentials_error(&text) => Ec2Error {
            message: "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use --profile".into(),
            fatal: true,
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            Ec2Error { message: format!("EC2 is unreachable ({op}): {text}"), fatal: true }
        }
        _ => Ec2Error { message: format!("{op} failed: {text}"), fatal: false },
    }
}

/// The EC2 client `conductor reap` asks in `region`: the shared SDK config (credentials,
/// `AWS_ENDPOINT_URL`), the SDK's standard retry mode with `max_attempts` attempts (exponential
/// backoff with jitter; throttling such as `RequestLimitExceeded`/`Throttling` and HTTP 5xx
/// answers are retried), and `attempt_timeout` for each attempt (a timed-out attempt is retried
/// too).
pub fn reap_client(
    sdk: &aws_config::SdkConfig,
    region: &str,
    max_attempts: u32,
    attempt_timeout: std::time::Duration,
) -> Client {
    use aws_sdk_ec2::config::retry::RetryConfig;
    use aws_sdk_ec2::config::timeout::TimeoutConfig;
    let timeouts = sdk
        .timeout_config()
        .cloned()
        .unwrap_or_else(TimeoutConfig::disabled)
        .to_builder()
        .operation_attempt_timeout(attempt_timeout)
        .build();
    let config = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

/// The state (`running`, `terminated`, …) of each instance EC2 reports among `ids`, asked with the
/// `instance-id` filter (not `InstanceIds`), so an id EC2 does not know is absent from the answer
/// rather than an error. Every page is read; the first page that fails fails the call.
pub async fn instance_states(
    client: &Client,
    ids: &[String],
) -> Result<Vec<(String, String)>, Ec2Error> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("instance-id")
        .set_values(Some(ids.to_vec()))
        .build();
    let mut pages = client
        .describe_instances()
        .filters(filter)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(describe_error)?;
        for reservation in page.reservations() {
            for instance in reservation.instances() {
                let (Some(id), Some(state)) = (
                    instance.instance_id(),
                    instance.state().and_then(|s| s.name()),
                ) else {
                    continue;
                };
                out.push((id.to_owned(), state.as_str().to_owned()));
            }
        }
    }
    Ok(out)
}

/// A clear message for a failed `DescribeInstances` (after the SDK's retries).
fn describe_error<E>(err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = aws::error_text(&err);
    let code = err.code().unwrap_or("").to_owned();
    let detail = err.message().unwrap_or("").to_owned();
    let message = match (code.as_str(), &err) {
        ("UnauthorizedOperation" | "AuthFailure", _) => format!(
            "EC2 refused DescribeInstances: {code}: {detail} (the credentials in use need ec2:DescribeInstances)"
        ),
        ("RequestLimitExceeded" | "Throttling", _) => format!(
            "EC2 still throttled DescribeInstances after the retries: {code}: {detail}"
        ),
        ("", SdkError::TimeoutError(_)) => {
            format!("EC2 did not answer DescribeInstances in time: {text}")
        }
        ("", SdkError::DispatchFailure(d)) if d.is_timeout() => {
            format!("EC2 did not answer DescribeInstances in time: {text}")
        }
        ("", SdkError::DispatchFailure(d))
            if !d.is_io() && aws::is_credentials_error(&text) =>
        {
            "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use --profile".into()
        }
        ("", SdkError::DispatchFailure(_)) => format!("EC2 is unreachable: {text}"),
        ("", _) => format!("DescribeInstances failed: {text}"),
        _ => format!("EC2 refused DescribeInstances: {code}: {detail}"),
    };
    Ec2Error {
        message,
        fatal: true,
    }
}
