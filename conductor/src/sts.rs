//! The AWS account the conductor acts in, from STS `GetCallerIdentity`, asked once per `launch`
//! or `register` run, **before** any registration is created.
//!
//! A registration made with `launch.instance_identity` on binds the instance's AWS-signed
//! identity document to this account and to the SDK config's region; the signer then refuses a
//! CSR whose document names any other. The binding must be in the record from the moment it
//! exists: a registration written without it and completed later would let a CSR without the
//! proof race in between.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use schemas::registration::IdentityBinding;
use schemas::registry::aws;

/// Who the credentials in use are, and where the instances will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// 12-digit AWS account id.
    pub account_id: String,
    /// The caller's ARN (logged, never required).
    pub arn: String,
    /// The SDK config's region: where EC2 launches the instances.
    pub region: String,
}

impl Caller {
    /// What each registration of this run requires of the identity document.
    pub fn binding(&self) -> IdentityBinding {
        IdentityBinding {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
        }
    }
}

/// Why the account could not be found out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StsError(pub String);

/// Hint appended to every failure: the way around the call.
const TURN_OFF: &str = "(each registration binds the instance's identity document to this account and \
     region; `launch.instance_identity: false` in the config launches without that proof and without this call)";

/// Ask STS who the credentials in use belong to. One call; the SDK's retries apply.
pub async fn caller(sdk: &aws_config::SdkConfig) -> Result<Caller, StsError> {
    let region = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            StsError(format!(
                "no AWS region configured, so the region instances will run in is unknown; set AWS_REGION, pass --region, or set `region:` in the config {TURN_OFF}"
            ))
        })?;
    let client = aws_sdk_sts::Client::new(sdk);
    let out = client
        .get_caller_identity()
        .send()
        .await
        .map_err(classify)?;
    let account_id = out.account().unwrap_or_default().to_owned();
    if !schemas::config::is_account_id(&account_id) {
        return Err(StsError(format!(
            "sts:GetCallerIdentity answered with `{}`, not a 12-digit account id {TURN_OFF}",
            account_id.chars().take(40).collect::<String>()
        )));
    }
    let arn = out.arn().unwrap_or_default().to_owned();
    tracing::info!(account_id, arn, region, "caller identity");
    Ok(Caller {
        account_id,
        arn,
        region,
    })
}

/// A clear message for an STS error, with what to do about it.
fn classify<E>(err: SdkError<E, aws_sdk_sts::config::http::HttpResponse>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = aws::error_text(&err);
    let code = err.code().unwrap_or("").to_owned();
    let detail = err.message().unwrap_or("").to_owned();
    let message = match code.as_str() {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => format!(
            "AWS denied sts:GetCallerIdentity ({code}: {detail}); the credentials in use need \
             `sts:GetCallerIdentity` (IAM allows it to every identity unless an SCP, permissions \
             boundary or VPC endpoint policy denies it) {TURN_OFF}"
        ),
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken"
        | "InvalidAccessKeyId" => format!(
            "AWS rejected the credentials ({code}) at sts:GetCallerIdentity; check AWS_PROFILE / the access key, or refresh the session"
        ),
        "" => match &err {
            SdkError::DispatchFailure(d)
                if !d.is_io() && !d.is_timeout() && aws::is_credentials_error(&text) =>
            {
                "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use --profile".into()
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("STS is unreachable (sts:GetCallerIdentity): {text}")
            }
            _ => format!("sts:GetCallerIdentity failed: {text} {TURN_OFF}"),
        },
        _ => format!("AWS refused sts:GetCallerIdentity: {code}: {detail} {TURN_OFF}"),
    };
    StsError(message)
}
