//! An in-memory [`Registry`] with the same compare-and-swap semantics as the real backends, for
//! unit tests and the in-process decision benchmark. It can be switched "down" to act unreachable.

use async_trait::async_trait;
use schemas::group::{EnrollmentGroup, Member};
use schemas::registration::Registration;
use schemas::registry::{Registry, RegistryError, Version};
use schemas::retirement::Retirement;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct MemRegistry {
    records: Mutex<BTreeMap<String, (Registration, u64)>>,
    /// Instance claims: instance id → certname.
    pub claims: Mutex<BTreeMap<String, String>>,
    /// Enrollment groups: name → (group, version).
    groups: Mutex<BTreeMap<String, (EnrollmentGroup, u64)>>,
    /// Member slots: (group, slot) → member.
    pub slots: Mutex<BTreeMap<(String, u32), Member>>,
    /// When set, `take_slot` fails with `Unreachable` (a crash between the claim and the slot).
    pub slots_down: AtomicBool,
    /// Retirements: certname → (record, version).
    pub retired: Mutex<BTreeMap<String, (Retirement, u64)>>,
    /// Retirements whose stored record is unreadable (`get_retirement` is `Err(Corrupt)`).
    pub corrupt_retired: Mutex<std::collections::BTreeSet<String>>,
    next: AtomicU64,
    /// When set, every call fails with `Unreachable`.
    pub down: AtomicBool,
}

impl MemRegistry {
    fn up(&self) -> Result<(), RegistryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(RegistryError::Unreachable {
                location: self.location(),
                reason: "switched down by the test".into(),
            });
        }
        Ok(())
    }
    fn version(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }
    /// The stored record, for assertions.
    pub fn peek(&self, certname: &str) -> Option<Registration> {
        self.records
            .lock()
            .expect("lock")
            .get(certname)
            .map(|(r, _)| r.clone())
    }
}

#[async_trait]
impl Registry for MemRegistry {
    fn location(&self) -> String {
        "mem://test".into()
    }
    async fn create(&self, record: &Registration) -> Result<Version, RegistryError> {
        self.up()?;
        let v = self.version();
        let mut m = self.records.lock().expect("lock");
        if m.contains_key(&record.certname) {
            return Err(RegistryError::AlreadyExists(record.certname.clone()));
        }
        m.insert(record.certname.clone(), (record.clone(), v));
        Ok(Version(v.to_string()))
    }
    async fn get(&self, certname: &str) -> Result<Option<(Registration, Version)>, RegistryError> {
        self.up()?;
        Ok(self
            .records
            .lock()
            .expect("lock")
            .get(certname)
            .map(|(r, v)| (r.clone(), Version(v.to_string()))))
    }
    async fn update(
        &self,
        record: &Registration,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        self.up()?;
        let v = self.version();
        let mut m = self.records.lock().expect("lock");
        match m.get_mut(&record.certname) {
            None => Err(RegistryError::NotFound(record.certname.clone())),
            Some((_, cur)) if cur.to_string() != expected.0 => {
                Err(RegistryError::Conflict(record.certname.clone()))
            }
            Some(slot) => {
                *slot = (record.clone(), v);
                Ok(Version(v.to_string()))
            }
        }
    }
    async fn delete(&self, certname: &str) -> Result<(), RegistryError> {
        self.up()?;
        self.records.lock().expect("lock").remove(certname);
        Ok(())
    }
    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        self.up()?;
        Ok(self.records.lock().expect("lock").keys().cloned().collect())
    }
    async fn create_group(&self, group: &EnrollmentGroup) -> Result<Version, RegistryError> {
        self.up()?;
        group.validate().map_err(|reason| RegistryError::Other {
            location: self.location(),
            reason,
        })?;
        let v = self.version();
        let mut m = self.groups.lock().expect("lock");
        if m.contains_key(&group.name) {
            return Err(RegistryError::GroupExists(group.name.clone()));
        }
        m.insert(group.name.clone(), (group.clone(), v));
        Ok(Version(v.to_string()))
    }
    async fn get_group(
        &self,
        name: &str,
    ) -> Result<Option<(EnrollmentGroup, Version)>, RegistryError> {
        self.up()?;
        Ok(self
            .groups
            .lock()
            .expect("lock")
            .get(name)
            .map(|(g, v)| (g.clone(), Version(v.to_string()))))
    }
    async fn update_group(
        &self,
        group: &EnrollmentGroup,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        self.up()?;
        let v = self.version();
        let mut m = self.groups.lock().expect("lock");
        match m.get_mut(&group.name) {
            None => Err(RegistryError::NotFound(group.name.clone())),
            Some((_, cur)) if cur.to_string() != expected.0 => {
                Err(RegistryError::GroupConflict(group.name.clone()))
            }
            Some(slot) => {
                *slot = (group.clone(), v);
                Ok(Version(v.to_string()))
            }
        }
    }
    async fn list_groups(&self) -> Result<Vec<String>, RegistryError> {
        self.up()?;
        Ok(self.groups.lock().expect("lock").keys().cloned().collect())
    }
    async fn take_slot(&self, member: &Member) -> Result<bool, RegistryError> {
        self.up()?;
        if self.slots_down.load(Ordering::SeqCst) {
            return Err(RegistryError::Unreachable {
                location: self.location(),
                reason: "slots switched down by the test".into(),
            });
        }
        let mut m = self.slots.lock().expect("lock");
        let key = (member.group.clone(), member.slot);
        if m.contains_key(&key) {
            return Ok(false);
        }
        m.insert(key, member.clone());
        Ok(true)
    }
    async fn list_slots(&self, group: &str) -> Result<Vec<u32>, RegistryError> {
        self.up()?;
        Ok(self
            .slots
            .lock()
            .expect("lock")
            .keys()
            .filter(|(g, _)| g == group)
            .map(|(_, n)| *n)
            .collect())
    }
    async fn get_member(&self, group: &str, slot: u32) -> Result<Option<Member>, RegistryError> {
        self.up()?;
        Ok(self
            .slots
            .lock()
            .expect("lock")
            .get(&(group.to_owned(), slot))
            .cloned())
    }
    async fn claim_instance(
        &self,
        instance_id: &str,
        certname: &str,
    ) -> Result<String, RegistryError> {
        self.up()?;
        schemas::registration::check_instance_id(instance_id).map_err(|reason| {
            RegistryError::Other {
                location: self.location(),
                reason,
            }
        })?;
        Ok(self
            .claims
            .lock()
            .expect("lock")
            .entry(instance_id.to_owned())
            .or_insert_with(|| certname.to_owned())
            .clone())
    }
    async fn retire(&self, retirement: &Retirement) -> Result<bool, RegistryError> {
        self.up()?;
        retirement
            .validate()
            .map_err(|reason| RegistryError::Other {
                location: self.location(),
                reason,
            })?;
        let v = self.version();
        let mut m = self.retired.lock().expect("lock");
        if m.contains_key(&retirement.certname) {
            return Ok(false);
        }
        m.insert(retirement.certname.clone(), (retirement.clone(), v));
        Ok(true)
    }
    async fn get_retirement(
        &self,
        certname: &str,
    ) -> Result<Option<(Retirement, Version)>, RegistryError> {
        self.up()?;
        if self
            .corrupt_retired
            .lock()
            .expect("lock")
            .contains(certname)
        {
            return Err(RegistryError::Corrupt {
                location: self.location(),
                key: format!("retired/{certname}.json"),
                reason: "switched corrupt by the test".into(),
            });
        }
        Ok(self
            .retired
            .lock()
            .expect("lock")
            .get(certname)
            .map(|(r, v)| (r.clone(), Version(v.to_string()))))
    }
    async fn update_retirement(
        &self,
        retirement: &Retirement,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        self.up()?;
        let v = self.version();
        let mut m = self.retired.lock().expect("lock");
        match m.get_mut(&retirement.certname) {
            None => Err(RegistryError::NotFound(retirement.certname.clone())),
            Some((_, cur)) if cur.to_string() != expected.0 => {
                Err(RegistryError::Conflict(retirement.certname.clone()))
            }
            Some(slot) => {
                *slot = (retirement.clone(), v);
                Ok(Version(v.to_string()))
            }
        }
    }
    async fn list_retired(&self) -> Result<Vec<String>, RegistryError> {
        self.up()?;
        Ok(self.retired.lock().expect("lock").keys().cloned().collect())
    }
}
