//! `s3://bucket/prefix`: one JSON object per registration at `<prefix>/registrations/<certname>.json`,
//! written with S3 conditional writes (`If-None-Match: *` to create, `If-Match: <etag>` to update).
//! The client comes from [`super::aws::sdk_config`] (standard credential chain, `--profile`,
//! `--region`, `AWS_ENDPOINT_URL`); path-style addressing is used whenever an endpoint override is
//! in effect, because S3-compatible servers rarely have wildcard DNS.

use super::{
    Registry, RegistryError, RegistryOptions, Version, aws, checked, checked_group, checked_holder,
    checked_instance, checked_retired, valid_group, valid_member, valid_retirement,
};
use crate::group::{EnrollmentGroup, Member};
use crate::registration::{Registration, check_certname};
use crate::retirement::Retirement;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// The S3 backend.
#[derive(Debug, Clone)]
pub struct S3Registry {
    client: Client,
    bucket: String,
    /// No leading or trailing `/`; may be empty.
    prefix: String,
}

/// An S3 error reduced to what the backend decides on.
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    /// The error as the caller sees it when no operation-specific meaning applies.
    error: RegistryError,
}

impl S3Registry {
    /// Build the client (no request is made yet).
    pub async fn open(bucket: String, prefix: String, opts: &RegistryOptions) -> Self {
        let sdk = aws::sdk_config(opts).await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.endpoint_url().is_some() {
            conf = conf.force_path_style(true);
        }
        S3Registry {
            client: Client::from_conf(conf.build()),
            bucket,
            prefix,
        }
    }

    /// A registry on an already-built client (for callers that share one client).
    pub fn with_client(client: Client, bucket: String, prefix: String) -> Self {
        S3Registry {
            client,
            bucket,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    fn loc(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "registrations/".to_owned()
        } else {
            format!("{}/registrations/", self.prefix)
        }
    }

    fn claim_key(&self, instance_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("instances/{instance_id}")
        } else {
            format!("{}/instances/{instance_id}", self.prefix)
        }
    }

    /// The whole body of an object read from `key`.
    async fn body(&self, body: ByteStream, key: &str) -> Result<Vec<u8>, RegistryError> {
        Ok(body
            .collect()
            .await
            .map_err(|e| RegistryError::Unreachable {
                location: self.loc(),
                reason: format!("reading {key}: {e}"),
            })?
            .to_vec())
    }

    async fn read_claim(&self, key: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .get_bytes(key)
            .await?
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).trim().to_owned()))
    }

    fn key(&self, certname: &str) -> String {
        format!("{}{certname}.json", self.key_prefix())
    }

    /// `<prefix>/groups/`.
    fn groups_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "groups/".to_owned()
        } else {
            format!("{}/groups/", self.prefix)
        }
    }

    /// `<prefix>/retired/`.
    fn retired_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "retired/".to_owned()
        } else {
            format!("{}/retired/", self.prefix)
        }
    }

    fn group_key(&self, name: &str) -> String {
        format!("{}{name}/group.json", self.groups_prefix())
    }

    fn slots_prefix(&self, group: &str) -> String {
        format!("{}{group}/slots/", self.groups_prefix())
    }

    /// Create-only PUT: `Ok(Some(etag))` when created (the ETag empty if the server sent none),
    /// `Ok(None)` when the key exists. Overlapping conditional writes are retried.
    async fn put_new(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Option<String>, RegistryError> {
        for attempt in 1..=4u64 {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .if_none_match("*")
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match sent {
                Ok(out) => return Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
                Err(e) => {
                    let f = self.failure("PutObject", e);
                    match (f.status, f.code.as_deref()) {
                        (Some(412), _) | (_, Some("PreconditionFailed")) => return Ok(None),
                        // Two conditional writes to one key overlapped: retry; the loser sees 412.
                        (_, Some("ConditionalRequestConflict")) => {
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt))
                                .await;
                        }
                        _ => return Err(f.error),
                    }
                }
            }
        }
        Err(RegistryError::Other {
            location: self.loc(),
            reason: format!("could not create {key}: concurrent writers kept conflicting"),
        })
    }

    /// Compare-and-swap PUT of a JSON document: `Ok(Ok(etag))` when `expected` was current,
    /// `Ok(Err(Cas::Conflict))` when another write came first, `Ok(Err(Cas::Missing))` when the
    /// key is gone.
    async fn put_if_match(
        &self,
        key: &str,
        body: Vec<u8>,
        expected: &Version,
    ) -> Result<Result<Option<String>, Cas>, RegistryError> {
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(&expected.0)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Ok(out.e_tag().map(str::to_owned))),
            Err(e) => {
                let f = self.failure("PutObject", e);
                match (f.status, f.code.as_deref()) {
                    (_, Some("NoSuchKey")) => Ok(Err(Cas::Missing)),
                    (Some(412), _)
                    | (_, Some("PreconditionFailed" | "ConditionalRequestConflict")) => {
                        Ok(Err(Cas::Conflict))
                    }
                    _ => Err(f.error),
                }
            }
        }
    }

    /// GET: the bytes and the ETag, `Ok(None)` when the key does not exist.
    async fn get_bytes(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let tag = out.e_tag().unwrap_or_default().to_owned();
                Ok(Some((self.body(out.body, key).await?, tag)))
            }
            Err(e) => {
                let f = self.failure("GetObject", e);
                match f.code.as_deref() {
                    Some("NoSuchKey") => Ok(None),
                    _ => Err(f.error),
                }
            }
        }
    }

    /// Every key under `prefix` (with `delimiter`: the common prefixes instead).
    async fn list_keys(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failure("ListObjectsV2", e).error)?;
            if delimiter.is_some() {
                keys.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_owned)),
                );
            } else {
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
        }
        Ok(keys)
    }

    fn failure<E>(
        &self,
        op: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let location = self.loc();
        let text = aws::error_text(&err);
        let error = match (&err, code.as_deref()) {
            (_, Some("NoSuchBucket")) => RegistryError::NoSuchBucket { location, bucket: self.bucket.clone() },
            (_, Some("AccessDenied" | "AllAccessDisabled")) => RegistryError::AccessDenied { location },
            (_, Some(c @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken"))) => {
                RegistryError::Other {
                    location,
                    reason: format!("AWS rejected the credentials ({c}); check AWS_PROFILE / the access key, or refresh the session"),
                }
            }
            _ if status == Some(403) => RegistryError::AccessDenied { location },
            (SdkError::ServiceError(_) | SdkError::ResponseError(_), _) => {
                RegistryError::Other { location, reason: format!("{op} failed (HTTP {}): {text}", status.unwrap_or(0)) }
            }
            _ if no_region(&text) => RegistryError::Other {
                location,
                reason: "no AWS region configured; set AWS_REGION, pass --region, or set `region:` in the config".into(),
            },
            (SdkError::DispatchFailure(d), _) if !d.is_io() && !d.is_timeout() && aws::is_credentials_error(&text) => {
                RegistryError::Credentials { location }
            }
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => RegistryError::Unreachable { location, reason: text },
            _ => RegistryError::Other { location, reason: format!("{op} failed: {text}") },
        };
        Failure {
            status,
            code,
            error,
        }
    }

    /// Whether the bucket's public access block, policy status and ACL let the public read it.
    async fn exposure(&self) -> Vec<String> {
        let bucket = &self.bucket;
        let mut warnings = Vec::new();
        let blocked = match self
            .client
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.public_access_block_configuration().map(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            }),
            Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => Some(false),
            Err(e) => {
                tracing::debug!(registry = %self.loc(), error = %aws::error_text(&e), "GetPublicAccessBlock failed; check skipped");
                None
            }
        };
        if blocked == Some(true) {
            return warnings; // public policies and ACLs are ignored: nothing else can make it public
        }
        match self.client.get_bucket_policy_status().bucket(bucket).send().await {
            Ok(out) if out.policy_status().and_then(|s| s.is_public()) == Some(true) => warnings.push(format!(
                "bucket `{bucket}` has a bucket policy that makes it public: anyone can read registrations and race a new \
                 instance for its certificate; remove the public statements (aws s3api get-bucket-policy --bucket {bucket})"
            )),
            Ok(_) => {}
            Err(e) => tracing::debug!(registry = %self.loc(), error = %aws::error_text(&e), "GetBucketPolicyStatus failed; check skipped"),
        }
        match self.client.get_bucket_acl().bucket(bucket).send().await {
            Ok(out) => {
                let public = out
                    .grants()
                    .iter()
                    .filter_map(|g| g.grantee().and_then(|g| g.uri()))
                    .any(|uri| {
                        uri.ends_with("/global/AllUsers")
                            || uri.ends_with("/global/AuthenticatedUsers")
                    });
                if public {
                    warnings.push(format!(
                        "bucket `{bucket}` has an ACL that grants access to all (authenticated) AWS users: anyone can list \
                         registrations and race a new instance for its certificate; run: aws s3api put-bucket-acl --bucket {bucket} --acl private"
                    ));
                }
            }
            Err(e) => {
                tracing::debug!(registry = %self.loc(), error = %aws::error_text(&e), "GetBucketAcl failed; check skipped")
            }
        }
        if blocked == Some(false) {
            warnings.push(format!(
                "bucket `{bucket}` has no complete public access block, so a policy or ACL change could expose it; unless your \
                 account-level block covers it, run: aws s3api put-public-access-block --bucket {bucket} \
                 --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"
            ));
        }
        warnings
    }
}

fn no_region(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("region")
        && (t.contains("must be set") || t.contains("no region") || t.contains("missing region"))
}

#[async_trait]
impl Registry for S3Registry {
    fn location(&self) -> String {
        self.loc()
    }

    async fn create(&self, record: &Registration) -> Result<Version, RegistryError> {
        checked(self, &record.certname)?;
        let key = self.key(&record.certname);
        match self
            .put_new(&key, "application/json", record.to_json())
            .await?
        {
            Some(tag) => etag(self, &record.certname, (!tag.is_empty()).then_some(&tag)),
            None => Err(RegistryError::AlreadyExists(record.certname.clone())),
        }
    }

    async fn get(&self, certname: &str) -> Result<Option<(Registration, Version)>, RegistryError> {
        checked(self, certname)?;
        let key = self.key(certname);
        let Some((bytes, tag)) = self.get_bytes(&key).await? else {
            return Ok(None);
        };
        let version = etag(self, certname, (!tag.is_empty()).then_some(&tag))?;
        let record =
            Registration::from_json(certname, &bytes).map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key: key.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some((record, version)))
    }

    async fn update(
        &self,
        record: &Registration,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        checked(self, &record.certname)?;
        let name = &record.certname;
        match self
            .put_if_match(&self.key(name), record.to_json(), expected)
            .await?
        {
            Ok(tag) => etag(self, name, tag.as_deref()),
            Err(Cas::Missing) => Err(RegistryError::NotFound(name.clone())),
            Err(Cas::Conflict) => Err(RegistryError::Conflict(name.clone())),
        }
    }

    async fn claim_instance(
        &self,
        instance_id: &str,
        certname: &str,
    ) -> Result<String, RegistryError> {
        checked_instance(self, instance_id)?;
        checked_holder(self, certname)?;
        let key = self.claim_key(instance_id);
        for attempt in 1..=4u64 {
            let body = certname.as_bytes().to_vec();
            if self.put_new(&key, "text/plain", body).await?.is_some() {
                return Ok(certname.to_owned());
            }
            // taken: by whom (gone again meanwhile: try once more)
            if let Some(holder) = self.read_claim(&key).await? {
                return Ok(holder);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
        }
        Err(RegistryError::Other {
            location: self.loc(),
            reason: format!("could not claim {key}: concurrent writers kept conflicting"),
        })
    }

    async fn delete(&self, certname: &str) -> Result<(), RegistryError> {
        checked(self, certname)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(certname))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = self.failure("DeleteObject", e);
                match f.code.as_deref() {
                    Some("NoSuchKey") => Ok(()),
                    _ => Err(f.error),
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        let prefix = self.key_prefix();
        let mut names = Vec::new();
        for key in self.list_keys(&prefix, None).await? {
            match key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix(".json"))
            {
                Some(name) if check_certname(name).is_ok() => names.push(name.to_owned()),
                _ => {
                    tracing::warn!(registry = %self.loc(), key, "ignoring an object that is not a registration")
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn create_group(&self, group: &EnrollmentGroup) -> Result<Version, RegistryError> {
        checked_group(self, &group.name)?;
        valid_group(self, group)?;
        match self
            .put_new(
                &self.group_key(&group.name),
                "application/json",
                group.to_json(),
            )
            .await?
        {
            Some(tag) => etag(self, &group.name, (!tag.is_empty()).then_some(&tag)),
            None => Err(RegistryError::GroupExists(group.name.clone())),
        }
    }

    async fn get_group(
        &self,
        name: &str,
    ) -> Result<Option<(EnrollmentGroup, Version)>, RegistryError> {
        checked_group(self, name)?;
        let key = self.group_key(name);
        let Some((bytes, tag)) = self.get_bytes(&key).await? else {
            return Ok(None);
        };
        let version = etag(self, name, (!tag.is_empty()).then_some(&tag))?;
        let group =
            EnrollmentGroup::from_json(name, &bytes).map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key,
                reason: e.to_string(),
            })?;
        Ok(Some((group, version)))
    }

    async fn update_group(
        &self,
        group: &EnrollmentGroup,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        checked_group(self, &group.name)?;
        valid_group(self, group)?;
        let name = &group.name;
        match self
            .put_if_match(&self.group_key(name), group.to_json(), expected)
            .await?
        {
            Ok(tag) => etag(self, name, tag.as_deref()),
            Err(Cas::Missing) => Err(RegistryError::NotFound(format!("group {name}"))),
            Err(Cas::Conflict) => Err(RegistryError::GroupConflict(name.clone())),
        }
    }

    async fn list_groups(&self) -> Result<Vec<String>, RegistryError> {
        let prefix = self.groups_prefix();
        let mut names: Vec<String> = self
            .list_keys(&prefix, Some("/"))
            .await?
            .into_iter()
            .filter_map(|p| {
                let name = p.strip_prefix(&prefix)?.strip_suffix('/')?.to_owned();
                crate::group::check_group_name(&name)
                    .is_ok()
                    .then_some(name)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn take_slot(&self, member: &Member) -> Result<bool, RegistryError> {
        valid_member(self, member)?;
        let key = format!("{}{}.json", self.slots_prefix(&member.group), member.slot);
        Ok(self
            .put_new(&key, "application/json", member.to_json())
            .await?
            .is_some())
    }

    async fn list_slots(&self, group: &str) -> Result<Vec<u32>, RegistryError> {
        checked_group(self, group)?;
        let prefix = self.slots_prefix(group);
        let mut slots: Vec<u32> = self
            .list_keys(&prefix, None)
            .await?
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)
                    .and_then(|k| k.strip_suffix(".json"))
                    .and_then(super::file::parse_slot)
            })
            .collect();
        slots.sort_unstable();
        Ok(slots)
    }

    async fn get_member(&self, group: &str, slot: u32) -> Result<Option<Member>, RegistryError> {
        checked_group(self, group)?;
        let key = format!("{}{slot}.json", self.slots_prefix(group));
        let Some((bytes, _)) = self.get_bytes(&key).await? else {
            return Ok(None);
        };
        Member::from_json(group, slot, &bytes)
            .map(Some)
            .map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key,
                reason: e.to_string(),
            })
    }

    async fn retire(&self, retirement: &Retirement) -> Result<bool, RegistryError> {
        valid_retirement(self, retirement)?;
        let key = format!("{}{}.json", self.retired_prefix(), retirement.certname);
        Ok(self
            .put_new(&key, "application/json", retirement.to_json())
            .await?
            .is_some())
    }

    async fn get_retirement(
        &self,
        certname: &str,
    ) -> Result<Option<(Retirement, Version)>, RegistryError> {
        checked_retired(self, certname)?;
        let key = format!("{}{certname}.json", self.retired_prefix());
        let Some((bytes, tag)) = self.get_bytes(&key).await? else {
            return Ok(None);
        };
        let version = etag(self, certname, (!tag.is_empty()).then_some(&tag))?;
        let r = Retirement::from_json(certname, &bytes).map_err(|e| RegistryError::Corrupt {
            location: self.loc(),
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((r, version)))
    }

    async fn update_retirement(
        &self,
        retirement: &Retirement,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        valid_retirement(self, retirement)?;
        let name = &retirement.certname;
        let key = format!("{}{name}.json", self.retired_prefix());
        match self
            .put_if_match(&key, retirement.to_json(), expected)
            .await?
        {
            Ok(tag) => etag(self, name, tag.as_deref()),
            Err(Cas::Missing) => Err(RegistryError::NotFound(format!("retirement {name}"))),
            Err(Cas::Conflict) => Err(RegistryError::Conflict(name.clone())),
        }
    }

    async fn list_retired(&self) -> Result<Vec<String>, RegistryError> {
        let prefix = self.retired_prefix();
        let mut names: Vec<String> = self
            .list_keys(&prefix, None)
            .await?
            .iter()
            .filter_map(|k| {
                let n = k.strip_prefix(&prefix)?.strip_suffix(".json")?;
                crate::retirement::check_retired_certname(n)
                    .is_ok()
                    .then(|| n.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn exposure_warnings(&self) -> Vec<String> {
        self.exposure().await
    }
}

/// Why a compare-and-swap PUT wrote nothing.
enum Cas {
    Conflict,
    Missing,
}

fn etag(reg: &S3Registry, certname: &str, etag: Option<&str>) -> Result<Version, RegistryError> {
    etag.map(|e| Version(e.to_owned())).ok_or_else(|| RegistryError::Other {
        location: reg.loc(),
        reason: format!("the server returned no ETag for `{certname}`; conditional updates need an S3 that returns ETags"),
    })
}
