//! The signer against Debian 13's puppetserver 8.x and Puppet 8 agents (run from the
//! `puppetserver-trixie` root that `tests/setup.sh` builds), plus Puppet 7 agents against that
//! server: the suite in `puppet_suite/`, shared with `puppet.rs`.

use testkit::puppet::Release;

/// The server's and the agents' release (the suite's `other_release` is the other one).
const RELEASE: Release = Release::Puppet8;

mod puppet_suite;
