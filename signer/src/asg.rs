//! `policy.groups.asg_membership`: an enrollment group member must also be, right now, an
//! instance of the group's Auto Scaling group (`Pending…` or `InService`), launched from the
//! group's launch template when the group names one. The identity document names neither the
//! ASG nor the template, so without this check any instance launched from the group's images in
//! its account and Region can join.
//!
//! One call per decision: Auto Scaling `DescribeAutoScalingInstances` for the instance id, in the
//! group's Region, with the signer's AWS credentials (`autoscaling:DescribeAutoScalingInstances`).
//! Any error is an infrastructure failure (nothing signed, exit 3), never an approval. This is the
//! signer's only AWS SDK besides the registry's S3, and it never depends on `aws-sdk-ec2`.

use crate::decide::{Check, Rejection};
use async_trait::async_trait;
use schemas::group::EnrollmentGroup;
use schemas::registry::RegistryOptions;

/// What Auto Scaling says about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgInstance {
    pub instance_id: String,
    pub group: String,
    /// `Pending`, `InService`, `Terminating`, `Standby`, …
    pub lifecycle_state: String,
    pub launch_template_id: Option<String>,
}

/// Where membership is looked up: Auto Scaling, or a test double.
#[async_trait]
pub trait Membership: Send + Sync {
    /// The instance as Auto Scaling knows it in `region`; `Ok(None)` if it is in no group.
    async fn instance(
        &self,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<AsgInstance>, String>;
}

/// The real one: the AWS SDK with the signer's standard credential chain.
pub struct AutoScaling {
    sdk: aws_config::SdkConfig,
}

impl AutoScaling {
    pub async fn new(opts: &RegistryOptions) -> AutoScaling {
        AutoScaling {
            sdk: schemas::registry::aws::sdk_config(opts).await,
        }
    }
}

#[async_trait]
impl Membership for AutoScaling {
    async fn instance(
        &self,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<AsgInstance>, String> {
        let conf = aws_sdk_autoscaling::config::Builder::from(&self.sdk)
            .region(aws_sdk_autoscaling::config::Region::new(region.to_owned()))
            .build();
        let client = aws_sdk_autoscaling::Client::from_conf(conf);
        let out = client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Auto Scaling DescribeAutoScalingInstances for {instance_id} in {region} failed: {}; the signer needs autoscaling:DescribeAutoScalingInstances",
                    schemas::registry::aws::error_text(&e)
                )
            })?;
        let mut found = out
            .auto_scaling_instances()
            .iter()
            .filter(|i| i.instance_id() == Some(instance_id));
        let Some(i) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(format!(
                "Auto Scaling answered twice for {instance_id}; not deciding on that"
            ));
        }
        Ok(Some(AsgInstance {
            instance_id: instance_id.to_owned(),
            group: i.auto_scaling_group_name().unwrap_or_default().to_owned(),
            lifecycle_state: i.lifecycle_state().unwrap_or_default().to_owned(),
            launch_template_id: i
                .launch_template()
                .and_then(|t| t.launch_template_id())
                .map(str::to_owned),
        }))
    }
}

/// Lifecycle states in which an instance may enroll: on its way in, or in service.
const JOINING: &[&str] = &["Pending", "Pending:Wait", "Pending:Proceed", "InService"];

/// Whether `found` shows `instance_id` as a current member of `group`'s Auto Scaling group.
pub fn check(
    group: &EnrollmentGroup,
    instance_id: &str,
    found: Option<&AsgInstance>,
) -> Result<(), Rejection> {
    let refuse = |reason: String| {
        Err(Rejection {
            check: Check::Group,
            reason,
        })
    };
    let Some(want) = &group.asg_name else {
        return refuse(format!(
            "policy.groups.asg_membership is on and enrollment group `{}` names no Auto Scaling group; recreate it with --asg",
            group.name
        ));
    };
    let Some(i) = found else {
        return refuse(format!(
            "instance {instance_id} is in no Auto Scaling group; enrollment group `{}` admits members of `{want}` only",
            group.name
        ));
    };
    if i.group != *want {
        return refuse(format!(
            "instance {instance_id} belongs to Auto Scaling group `{}`, not `{want}`",
            i.group
        ));
    }
    if !JOINING.contains(&i.lifecycle_state.as_str()) {
        return refuse(format!(
            "instance {instance_id} is `{}` in `{want}`; only Pending or InService instances enroll",
            i.lifecycle_state
        ));
    }
    if let Some(lt) = &group.launch_template_id
        && i.launch_template_id.as_deref() != Some(lt.as_str())
    {
        return refuse(format!(
            "instance {instance_id} was launched from launch template {}, not the group's {lt}",
            i.launch_template_id.as_deref().unwrap_or("(none reported)")
        ));
    }
    Ok(())
}
