//! Key layout (see the crate README for the full table).
//!
//! Two layouts share the key names. In the single-node layout every key of one workflow shares
//! the hash tag `{<prefix>:<instance>}`, and the global indexes share `{<prefix>}`: one script
//! touches two hash slots, which only a single server accepts. In the sharded layout (for Redis
//! Cluster, [`crate::RedisOptions::index_shards`]) the indexes are split into `n` shards, each
//! under its own hash tag `{<prefix>:s:<k>:<salt>}` (the salt spreads the shards' slots evenly,
//! see `shard_tag`), and every key of a workflow carries the tag of its shard
//! (`{<prefix>:s:<k>:<salt>}:w:<instance>:<kind>`), so each script's keys are in one slot. The
//! shard of a workflow is the CRC16 of its encoded instance id (Redis Cluster's slot function),
//! modulo `n`: it never changes for a store, which records `n` in `{<prefix>}:layout`.
//!
//! Prefix and instance id are percent-encoded (`%`, `:`, `{`, `}`), so a tag always ends at the
//! right brace and distinct ids give distinct keys.

use std::fmt::Write as _;

/// The keys of one backend's key space.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// The encoded prefix.
    prefix: String,
    /// The global keys of each index shard; one in the single-node layout.
    shards: Vec<Shard>,
    /// Whether this is the sharded layout (workflow keys carry their shard's tag).
    sharded: bool,
}

/// The global keys of one index shard, in the order scripts expect them after the per-workflow
/// keys: ready, parked, meta, instances, claim expiries, revision counter, listing entries.
#[derive(Debug, Clone)]
struct Shard {
    /// The shard's hash tag, braces included: `{<prefix>:s:<k>:<salt>}`.
    tag: String,
    globals: [String; 7],
}

/// The keys of one workflow (all in one hash slot).
#[derive(Debug, Clone)]
pub(crate) struct WorkflowKeys {
    /// Every key is `<base>:<suffix>`.
    tag: String,
    /// The index shard the workflow is in.
    shard: usize,
}

/// A workflow key that is looked for across instances (its index in [`OWN`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Own {
    /// The claims hash.
    Claims = 4,
    /// The event-queue hash.
    Events = 5,
}

/// Suffixes of a workflow's keys, in the order scripts receive them.
const OWN: [&str; 8] =
    ["snap", "blob", "results", "signals", "claims", "events", "archive", "staging"];

/// How many KEYS a per-workflow script receives: the workflow's own, then the globals.
pub(crate) const SCRIPT_KEYS: usize = OWN.len() + 7;

/// The most index shards a store may have.
pub(crate) const MAX_SHARDS: u16 = 1024;

impl WorkflowKeys {
    fn key(&self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.tag.len() + 1 + suffix.len());
        key.push_str(&self.tag);
        key.push(':');
        key.push_str(suffix);
        key
    }

    /// The string holding the snapshot blob.
    pub(crate) fn blob(&self) -> String {
        self.key(OWN[1])
    }

    /// The hash of the results a state holds.
    pub(crate) fn results(&self) -> String {
        self.key(OWN[2])
    }

    /// The hash `save_snapshot` writes the results into before `save.lua` renames it.
    pub(crate) fn staging(&self) -> String {
        self.key(OWN[7])
    }

    /// The pending-signal hash.
    pub(crate) fn signals(&self) -> String {
        self.key(OWN[3])
    }

    /// The claims hash.
    pub(crate) fn claims(&self) -> String {
        self.key(OWN[4])
    }

    /// The event-queue hash (see `ev_*` in `lua/index.lua`).
    pub(crate) fn events(&self) -> String {
        self.key(OWN[5])
    }

    /// The results archive hash.
    pub(crate) fn archive(&self) -> String {
        self.key(OWN[6])
    }

    /// The snap hash.
    pub(crate) fn snap(&self) -> String {
        self.key(OWN[0])
    }

    /// The index shard the workflow is in.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// The total length of the KEYS [`Self::push_script_keys`] appends.
    pub(crate) fn script_keys_len(&self, space: &KeySpace) -> usize {
        OWN.iter().map(|suffix| self.tag.len() + 1 + suffix.len()).sum::<usize>()
            + space.shards[self.shard].globals.iter().map(String::len).sum::<usize>()
    }

    /// Appends the KEYS of a per-workflow script to `cmd`: this workflow's keys, then the
    /// global ones (see `lua/common.lua`). One scratch buffer, no string per key.
    pub(crate) fn push_script_keys(&self, cmd: &mut redis::Cmd, space: &KeySpace) {
        let mut key = String::with_capacity(self.tag.len() + 9);
        key.push_str(&self.tag);
        key.push(':');
        let base = key.len();
        for suffix in OWN {
            key.truncate(base);
            key.push_str(suffix);
            cmd.arg(key.as_bytes());
        }
        for global in &space.shards[self.shard].globals {
            cmd.arg(global.as_bytes());
        }
    }
}

impl KeySpace {
    /// The key space of `prefix`: the single-node layout with `shards` `None`, else the
    /// sharded layout with that many index shards (1 to [`MAX_SHARDS`]).
    pub(crate) fn new(prefix: &str, shards: Option<u16>) -> Self {
        let prefix = encode(prefix);
        let globals = |tag: String| {
            let global = |name: &str| format!("{tag}:{name}");
            let globals = [
                global("ready"),
                global("parked"),
                global("meta"),
                global("instances"),
                global("claim-expiry"),
                global("revision"),
                global("listed"),
            ];
            Shard { tag, globals }
        };
        match shards {
            None => Self { shards: vec![globals(format!("{{{prefix}}}"))], prefix, sharded: false },
            Some(n) => {
                let n = n.clamp(1, MAX_SHARDS);
                let shards = (0..n).map(|k| globals(shard_tag(&prefix, k, n))).collect();
                Self { shards, prefix, sharded: true }
            }
        }
    }

    /// Keys of `instance_id`.
    pub(crate) fn workflow(&self, instance_id: &str) -> WorkflowKeys {
        let mut tag = String::with_capacity(self.prefix.len() + instance_id.len() + 16);
        if !self.sharded {
            tag.push('{');
            tag.push_str(&self.prefix);
            tag.push(':');
            encode_into(&mut tag, instance_id);
            tag.push('}');
            return WorkflowKeys { tag, shard: 0 };
        }
        encode_into(&mut tag, instance_id);
        let shard = usize::from(slot(tag.as_bytes())) % self.shards.len();
        let encoded = std::mem::take(&mut tag);
        let _ = write!(tag, "{}:w:{encoded}", self.shards[shard].tag);
        WorkflowKeys { tag, shard }
    }

    /// The number of index shards (1 in the single-node layout).
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Whether this is the sharded layout.
    pub(crate) fn sharded(&self) -> bool {
        self.sharded
    }

    /// The shards' numbers, `0..shard_count()`.
    pub(crate) fn shard_numbers(&self) -> std::ops::Range<usize> {
        0..self.shards.len()
    }

    /// The ready index of `shard`.
    pub(crate) fn ready(&self, shard: usize) -> &str {
        &self.shards[shard].globals[0]
    }

    /// The parked index of `shard`.
    pub(crate) fn parked(&self, shard: usize) -> &str {
        &self.shards[shard].globals[1]
    }

    /// Tags and last failed worker of the ready workflows of `shard`.
    pub(crate) fn meta(&self, shard: usize) -> &str {
        &self.shards[shard].globals[2]
    }

    /// The set of the instance ids stored in `shard`.
    pub(crate) fn instances(&self, shard: usize) -> &str {
        &self.shards[shard].globals[3]
    }

    /// Claim expiries of `shard`.
    pub(crate) fn claim_expiry(&self, shard: usize) -> &str {
        &self.shards[shard].globals[4]
    }

    /// The listing entries of `shard`: instance id -> `<status>\0<member>\0<definition>` (see
    /// `lua/index.lua`, `relist`).
    pub(crate) fn listed(&self, shard: usize) -> &str {
        &self.shards[shard].globals[6]
    }

    /// The listing index of `status` in `shard`, of one definition when given: members
    /// `<updated_at, 20 digits>:<instance id>`, all of score 0, so they sort by `updated_at`,
    /// then instance id (`relist` in `lua/index.lua` names them alike).
    pub(crate) fn listing_of(
        &self,
        shard: usize,
        status: &str,
        definition: Option<&str>,
    ) -> String {
        match definition {
            Some(definition) => format!("{}:{status}:{definition}", self.listed(shard)),
            None => format!("{}:{status}", self.listed(shard)),
        }
    }

    /// The key recording the layout of the store (`shards=<n>`), in the sharded layout.
    pub(crate) fn layout(&self) -> String {
        format!("{{{}}}:layout", self.prefix)
    }

    /// The set of stored instances of the single-node layout, whatever this key space's layout
    /// (to tell a store written in it).
    pub(crate) fn single_node_instances(&self) -> String {
        format!("{{{}}}:instances", self.prefix)
    }

    /// A glob (for `SCAN MATCH`) that matches the `kind` key of every instance of `shard` (of
    /// every instance, in the single-node layout).
    pub(crate) fn workflow_key_pattern(&self, shard: usize, kind: Own) -> String {
        let mut out = String::new();
        if self.sharded {
            out.push('\\');
            push_escaped(&mut out, &self.shards[shard].tag);
            out.push_str(":w:*:");
        } else {
            out.push_str("\\{");
            push_escaped(&mut out, &self.prefix);
            out.push_str(":*}:");
        }
        out.push_str(OWN[kind as usize]);
        out
    }

    /// The instance id of a `kind` key this key space names, `None` for another key.
    pub(crate) fn instance_of_key(&self, key: &str, kind: Own) -> Option<String> {
        let rest = key
            .strip_prefix('{')?
            .strip_suffix(OWN[kind as usize])?
            .strip_prefix(self.prefix.as_str())?;
        let encoded = if self.sharded {
            let (shard, rest) = rest.strip_prefix(":s:")?.split_once("}:w:")?;
            let (shard, _salt) = shard.split_once(':')?;
            let shard = shard.parse::<usize>().ok()?;
            let expected = self.shards.get(shard)?;
            // The whole tag, salt included, is this shard's.
            if !key.starts_with(expected.tag.as_str()) {
                return None;
            }
            rest.strip_suffix(':')?
        } else {
            rest.strip_prefix(':')?.strip_suffix("}:")?
        };
        decode(encoded)
    }

    /// The marker of a store whose never-expiring claims are in the claim-expiry index (set
    /// once the claims of a store written by an older version have been indexed).
    pub(crate) fn lasting_claims_indexed(&self) -> String {
        format!("{{{}}}:claims-indexed", self.prefix)
    }

    /// A glob (for `SCAN MATCH`) that matches every key of this key space and no other.
    pub(crate) fn pattern(&self) -> String {
        let mut out = String::from("\\{");
        push_escaped(&mut out, &self.prefix);
        out.push_str("[:}]*");
        out
    }
}

/// The hash tag of shard `k` of `n`: `{<prefix>:s:<k>:<salt>}`, with the smallest salt that
/// puts its slot in the `k`-th `n`-th of the slot range. A cluster's masters usually serve equal
/// ranges of slots (as `redis-cli --cluster create` assigns them), so the shards spread evenly
/// over them, whatever the prefix. Found at connect: about `n` hashes per shard.
fn shard_tag(prefix: &str, k: u16, n: u16) -> String {
    let (k, n) = (u32::from(k), u32::from(n));
    let wanted = (k * SLOTS / n)..((k + 1) * SLOTS / n);
    let mut tag = String::with_capacity(prefix.len() + 16);
    for salt in 0_u32.. {
        tag.clear();
        let _ = write!(tag, "{prefix}:s:{k}:{salt}");
        if wanted.contains(&u32::from(slot(tag.as_bytes()))) {
            break;
        }
    }
    format!("{{{tag}}}")
}

/// The number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// The Redis Cluster hash slot of a key without a hash tag: CRC16 (XMODEM) modulo 16384.
fn slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key) % 16384
}

/// Appends `text` to a glob, its special characters escaped.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The inverse of [`encode`]; `None` for text it cannot have written.
fn decode(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        let c = match code {
            "25" => '%',
            "3A" => ':',
            "7B" => '{',
            "7D" => '}',
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Percent-encodes the characters that would break a hash tag or a separator.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    encode_into(&mut out, id);
    out
}

/// [`encode`], appending to `out`.
fn encode_into(out: &mut String, id: &str) {
    if !id.contains(['%', ':', '{', '}']) {
        out.push_str(id);
        return;
    }
    for c in id.chars() {
        match c {
            '%' | ':' | '{' | '}' => {
                let _ = write!(out, "%{:02X}", u32::from(c));
            }
            _ => out.push(c),
        }
    }
}

/// The member of the claim-expiry index for one claim, as `claim_member` in `common.lua`
/// builds it: the instance id length-prefixed, so the pair can be split again whatever
/// characters the ids contain.
pub(crate) fn claim_member(instance_id: &str, task_id: &str) -> String {
    format!("{}:{instance_id}{task_id}", instance_id.len())
}

/// Splits a claim-expiry member into (instance id, task id).
pub(crate) fn split_claim_member(member: &str) -> Option<(&str, &str)> {
    let (len, rest) = member.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if !rest.is_char_boundary(len) {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_collide_or_break_the_tag() {
        let space = KeySpace::new("p", None);
        let a = space.workflow("a:b");
        let b = space.workflow("a%3Ab");
        assert_ne!(a.blob(), b.blob());
        assert_eq!(space.workflow("x}y{").blob(), "{p:x%7Dy%7B}:blob");
        assert_eq!(split_claim_member(&claim_member("a:b", "c")), Some(("a:b", "c")));
        assert_eq!(split_claim_member(&claim_member("a", "b:c")), Some(("a", "b:c")));
        assert_ne!(claim_member("a:b", "c"), claim_member("a", "b:c"));
        assert_eq!(KeySpace::new("a*b", None).pattern(), "\\{a\\*b[:}]*");
        let space = KeySpace::new("p:*", None);
        assert_eq!(space.workflow_key_pattern(0, Own::Events), "\\{p%3A\\*:*}:events");
        assert_eq!(space.workflow_key_pattern(0, Own::Claims), "\\{p%3A\\*:*}:claims");
        for id in ["plain", "a:b}{%c", "%3A"] {
            let key = space.workflow(id).events();
            assert_eq!(space.instance_of_key(&key, Own::Events).as_deref(), Some(id), "{key}");
            let key = space.workflow(id).claims();
            assert_eq!(space.instance_of_key(&key, Own::Claims).as_deref(), Some(id), "{key}");
        }
        assert_eq!(space.instance_of_key("{p%3A*:x}:snap", Own::Events), None);
        assert_eq!(space.instance_of_key("{other:x}:events", Own::Events), None);
    }

    #[test]
    fn script_keys_are_the_workflow_keys_then_the_globals() {
        let space = KeySpace::new("p:q", None);
        let keys = space.workflow("i:d");
        let mut cmd = redis::cmd("EVALSHA");
        keys.push_script_keys(&mut cmd, &space);
        let args: Vec<String> = cmd
            .args_iter()
            .skip(1)
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap_or_default(),
                _ => String::new(),
            })
            .collect();
        let mut expected: Vec<String> =
            OWN.iter().map(|suffix| format!("{{p%3Aq:i%3Ad}}:{suffix}")).collect();
        expected.extend(space.shards[0].globals.iter().cloned());
        assert_eq!(args, expected);
        assert_eq!(args.len(), SCRIPT_KEYS);
        assert_eq!(keys.signals(), "{p%3Aq:i%3Ad}:signals");
    }

    /// In the sharded layout every key a script of one workflow receives is in one hash slot
    /// (that of its shard's tag), the shards cover the workflows, and keys read back to ids.
    #[test]
    fn sharded_keys_share_their_shard_slot() {
        let space = KeySpace::new("p:q", Some(4));
        assert_eq!(space.shard_count(), 4);
        let mut used = [false; 4];
        for n in 0..200 {
            let id = format!("order:{n}}}{{");
            let keys = space.workflow(&id);
            used[keys.shard()] = true;
            let mut cmd = redis::cmd("EVALSHA");
            keys.push_script_keys(&mut cmd, &space);
            let tags: Vec<Vec<u8>> = cmd
                .args_iter()
                .skip(1)
                .map(|arg| match arg {
                    redis::Arg::Simple(bytes) => {
                        let start = bytes.iter().position(|b| *b == b'{').unwrap_or(0);
                        let end = bytes.iter().position(|b| *b == b'}').unwrap_or(0);
                        bytes[start..=end].to_vec()
                    }
                    _ => Vec::new(),
                })
                .collect();
            let expected = space.shards[keys.shard()].tag.clone().into_bytes();
            assert!(expected.starts_with(format!("{{p%3Aq:s:{}:", keys.shard()).as_bytes()));
            assert!(tags.iter().all(|tag| *tag == expected), "{id}: {tags:?}");
            for kind in [Own::Events, Own::Claims] {
                let key = if matches!(kind, Own::Events) { keys.events() } else { keys.claims() };
                assert_eq!(space.instance_of_key(&key, kind).as_deref(), Some(id.as_str()));
            }
        }
        assert!(used.iter().all(|used| *used), "every shard holds some of 200 workflows");
        let keys = space.workflow("a");
        assert_eq!(
            space.workflow_key_pattern(keys.shard(), Own::Events),
            format!("\\{}:w:*:events", space.shards[keys.shard()].tag)
        );
        // A key of the single-node layout, or of a shard this space does not have, is not one.
        assert_eq!(space.instance_of_key("{p%3Aq:a}:events", Own::Events), None);
        assert_eq!(space.instance_of_key("{p%3Aq:s:9:0}:w:a:events", Own::Events), None);
        let other_salt = format!("{{p%3Aq:s:{}:99999}}:w:a:events", keys.shard());
        assert_eq!(space.instance_of_key(&other_salt, Own::Events), None);
        // The shard of an id never changes: it is the slot function of the encoded id.
        assert_eq!(slot(b"123456789"), 0x31C3, "CRC16/XMODEM check value");
        assert_eq!(KeySpace::new("p", None).workflow("a").shard(), 0);
    }

    /// The shards' slots fall one in each `n`-th of the slot range, for any prefix, so masters
    /// serving equal slot ranges hold equal numbers of shards.
    #[test]
    fn shard_tags_spread_evenly_over_the_slots() {
        for prefix in ["sayiir", "app", "orders"] {
            for n in [1_u16, 3, 16, 1024] {
                let space = KeySpace::new(prefix, Some(n));
                for (k, shard) in space.shards.iter().enumerate() {
                    let inner = &shard.tag[1..shard.tag.len() - 1];
                    let slot = u32::from(slot(inner.as_bytes()));
                    let k = u32::try_from(k).unwrap_or(0);
                    let n = u32::from(n);
                    assert!(
                        slot >= k * SLOTS / n && slot < (k + 1) * SLOTS / n,
                        "{prefix} {k}/{n}"
                    );
                }
            }
            // Three masters with the ranges `redis-cli --cluster create` gives them, 16 shards:
            // at most one shard from an even split (the shard whose range a boundary cuts).
            let space = KeySpace::new(prefix, Some(16));
            let mut per_master = [0; 3];
            for shard in &space.shards {
                let inner = &shard.tag[1..shard.tag.len() - 1];
                let master = match slot(inner.as_bytes()) {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                };
                per_master[master] += 1;
            }
            assert!(
                per_master.iter().all(|count| (4..=6).contains(count)),
                "{prefix}: {per_master:?}"
            );
        }
    }
}
