//! The signer against Debian 12's puppetserver 7.9 and Puppet 7 agents (the host's packages),
//! plus Puppet 8 agents against that server: the suite in `puppet_suite/`, shared with
//! `puppet8.rs`.

use testkit::puppet::Release;

/// The server's and the agents' release (the suite's `other_release` is the other one).
const RELEASE: Release = Release::Puppet7;

mod puppet_suite;
