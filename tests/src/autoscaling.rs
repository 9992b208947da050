//! EC2 launch templates and Auto Scaling groups on a [`Moto`] server, driven through boto3 from
//! moto's own venv (the same wire protocol an AWS CLI or Terraform would speak). moto 5.2.5's
//! Auto Scaling needs nothing beyond the pinned `moto[ec2,s3]` (its `autoscaling` extra adds no
//! package): an ASG launches real moto EC2 instances from the template, with its image and
//! user-data, and `set_desired_capacity` scales it out.
//!
//! Every call is one `python -c SCRIPT REQUEST` (an argv vector, the request as JSON) whose
//! stdout is JSON.

use crate::moto::{Moto, REGION, venv};
use anyhow::{Context, Result, ensure};
use base64::Engine;
use serde_json::{Value, json};

const SCRIPT: &str = r#"
import base64, json, sys, boto3
req = json.loads(sys.argv[1])
kw = dict(endpoint_url=req["endpoint"], region_name=req["region"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
asg = boto3.client("autoscaling", **kw)
op = req["op"]
if op == "create_launch_template":
    out = ec2.create_launch_template(LaunchTemplateName=req["name"], LaunchTemplateData={
        "ImageId": req["image"], "InstanceType": "t3.micro", "UserData": req["user_data_b64"]})
    print(json.dumps({"id": out["LaunchTemplate"]["LaunchTemplateId"]}))
elif op == "create_asg":
    asg.create_auto_scaling_group(AutoScalingGroupName=req["name"],
        LaunchTemplate={"LaunchTemplateId": req["template"], "Version": "$Latest"},
        MinSize=0, MaxSize=20, DesiredCapacity=req["size"], AvailabilityZones=[req["region"] + "a"])
    print("{}")
elif op == "set_desired":
    asg.set_desired_capacity(AutoScalingGroupName=req["name"], DesiredCapacity=req["size"])
    print("{}")
elif op == "instances":
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[req["name"]])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in g["Instances"]]
    out = []
    if ids:
        for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for i in r["Instances"]:
                out.append({"instance_id": i["InstanceId"], "image_id": i["ImageId"],
                            "owner_id": r.get("OwnerId"), "launch_time": i["LaunchTime"].isoformat()})
    print(json.dumps(sorted(out, key=lambda i: i["launch_time"] + i["instance_id"])))
elif op == "run_instance":
    out = ec2.run_instances(ImageId=req["image"], InstanceType="t3.micro", MinCount=1, MaxCount=1)
    print(json.dumps({"id": out["Instances"][0]["InstanceId"]}))
elif op == "user_data":
    a = ec2.describe_instance_attribute(InstanceId=req["instance_id"], Attribute="userData")
    print(json.dumps({"user_data_b64": a.get("UserData", {}).get("Value", "")}))
else:
    raise SystemExit("unknown op " + op)
"#;

/// One instance of an Auto Scaling group, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub image_id: String,
    /// The account EC2 reports as the owner.
    pub owner_id: String,
}

/// Auto Scaling and launch templates on one moto server.
pub struct AutoScaling<'a> {
    moto: &'a Moto,
}

impl<'a> AutoScaling<'a> {
    pub fn new(moto: &'a Moto) -> Self {
        AutoScaling { moto }
    }

    fn call(&self, mut req: Value) -> Result<Value> {
        req["endpoint"] = json!(self.moto.endpoint());
        req["region"] = json!(REGION);
        let python = venv().join("bin/python");
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(req.to_string())
            .env_remove("AWS_PROFILE")
            .output()
            .with_context(|| format!("running {} (run `sudo tests/setup.sh`)", python.display()))?;
        ensure!(
            out.status.success(),
            "boto3 {} on moto failed: {}",
            req["op"],
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "boto3 {} printed no JSON: {}",
                req["op"],
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// A launch template for `image` whose user-data is `user_data`; returns its id (`lt-…`).
    pub fn create_launch_template(
        &self,
        name: &str,
        image: &str,
        user_data: &str,
    ) -> Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_data);
        let v = self.call(json!({"op": "create_launch_template", "name": name, "image": image, "user_data_b64": b64}))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .context("create_launch_template returned no id")
    }

    /// An Auto Scaling group of `size` instances from the launch template's latest version.
    pub fn create_group(&self, name: &str, template: &str, size: u32) -> Result<()> {
        self.call(json!({"op": "create_asg", "name": name, "template": template, "size": size}))
            .map(|_| ())
    }

    /// Scale the group to `size` instances.
    pub fn set_desired(&self, name: &str, size: u32) -> Result<()> {
        self.call(json!({"op": "set_desired", "name": name, "size": size}))
            .map(|_| ())
    }

    /// The group's instances, oldest first.
    pub fn instances(&self, name: &str) -> Result<Vec<Instance>> {
        let v = self.call(json!({"op": "instances", "name": name}))?;
        v.as_array()
            .context("instances: not a list")?
            .iter()
            .map(|i| {
                Ok(Instance {
                    instance_id: i["instance_id"].as_str().context("instance_id")?.to_owned(),
                    image_id: i["image_id"].as_str().context("image_id")?.to_owned(),
                    owner_id: i["owner_id"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    /// One instance from `image` outside any Auto Scaling group (`RunInstances`); its id.
    pub fn run_instance(&self, image: &str) -> Result<String> {
        let v = self.call(json!({"op": "run_instance", "image": image}))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .context("run_instances returned no id")
    }

    /// The user-data EC2 holds for an instance (decoded), as its IMDS would serve it.
    pub fn user_data(&self, instance_id: &str) -> Result<Vec<u8>> {
        let v = self.call(json!({"op": "user_data", "instance_id": instance_id}))?;
        base64::engine::general_purpose::STANDARD
            .decode(v["user_data_b64"].as_str().unwrap_or_default())
            .context("user-data is not base64")
    }
}
