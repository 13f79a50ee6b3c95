//! Key layout (see the crate README for the full table).
//!
//! Every key of one workflow shares the hash tag `{<prefix>:<instance>}`, and the global
//! indexes share `{<prefix>}`. Prefix and instance id are percent-encoded (`%`, `:`, `{`,
//! `}`), so a tag always ends at the right brace and distinct ids give distinct keys.

use std::fmt::Write as _;

/// The keys of one backend's key space.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// The encoded prefix.
    prefix: String,
    /// Global keys, in the order scripts expect them after the per-workflow keys:
    /// ready, parked, meta, instances, claim expiries, revision counter, listing entries.
    globals: [String; 7],
}

/// The keys of one workflow (all sharing its hash tag).
#[derive(Debug, Clone)]
pub(crate) struct WorkflowKeys {
    tag: String,
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

    /// The total length of the KEYS [`Self::push_script_keys`] appends.
    pub(crate) fn script_keys_len(&self, space: &KeySpace) -> usize {
        OWN.iter().map(|suffix| self.tag.len() + 1 + suffix.len()).sum::<usize>()
            + space.globals.iter().map(String::len).sum::<usize>()
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
        for global in &space.globals {
            cmd.arg(global.as_bytes());
        }
    }
}

impl KeySpace {
    pub(crate) fn new(prefix: &str) -> Self {
        let prefix = encode(prefix);
        let global = |name: &str| format!("{{{prefix}}}:{name}");
        let globals = [
            global("ready"),
            global("parked"),
            global("meta"),
            global("instances"),
            global("claim-expiry"),
            global("revision"),
            global("listed"),
        ];
        Self { prefix, globals }
    }

    /// Keys of `instance_id`.
    pub(crate) fn workflow(&self, instance_id: &str) -> WorkflowKeys {
        let mut tag = String::with_capacity(self.prefix.len() + instance_id.len() + 3);
        tag.push('{');
        tag.push_str(&self.prefix);
        tag.push(':');
        encode_into(&mut tag, instance_id);
        tag.push('}');
        WorkflowKeys { tag }
    }

    /// The ready index.
    pub(crate) fn ready(&self) -> &str {
        &self.globals[0]
    }

    /// The parked index.
    pub(crate) fn parked(&self) -> &str {
        &self.globals[1]
    }

    /// Tags and last failed worker of ready workflows.
    pub(crate) fn meta(&self) -> &str {
        &self.globals[2]
    }

    /// The set of stored instance ids.
    pub(crate) fn instances(&self) -> &str {
        &self.globals[3]
    }

    /// Claim expiries.
    pub(crate) fn claim_expiry(&self) -> &str {
        &self.globals[4]
    }

    /// The listing entries: instance id -> `<status>\0<member>\0<definition>` (see
    /// `lua/index.lua`, `relist`).
    pub(crate) fn listed(&self) -> &str {
        &self.globals[6]
    }

    /// The listing index of `status`: members `<updated_at, 20 digits>:<instance id>`, all
    /// of score 0, so they sort by `updated_at`, then instance id.
    pub(crate) fn listing(&self, status: &str) -> String {
        format!("{}:{status}", self.listed())
    }

    /// The listing index of `status` and `definition`, members as in [`Self::listing`].
    pub(crate) fn listing_by_definition(&self, status: &str, definition: &str) -> String {
        format!("{}:{status}:{definition}", self.listed())
    }

    /// The listing index of `status`, of one definition when given.
    pub(crate) fn listing_of(&self, status: &str, definition: Option<&str>) -> String {
        match definition {
            Some(definition) => self.listing_by_definition(status, definition),
            None => self.listing(status),
        }
    }

    /// A glob (for `SCAN MATCH`) that matches the `kind` key of every instance.
    pub(crate) fn workflow_key_pattern(&self, kind: Own) -> String {
        let mut out = String::from("\\{");
        push_escaped(&mut out, &self.prefix);
        out.push_str(":*}:");
        out.push_str(OWN[kind as usize]);
        out
    }

    /// The instance id of a `kind` key this key space names, `None` for another key.
    pub(crate) fn instance_of_key(&self, key: &str, kind: Own) -> Option<String> {
        let inner = key.strip_prefix('{')?.strip_suffix(OWN[kind as usize])?.strip_suffix("}:")?;
        let encoded = inner.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
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
        let space = KeySpace::new("p");
        let a = space.workflow("a:b");
        let b = space.workflow("a%3Ab");
        assert_ne!(a.blob(), b.blob());
        assert_eq!(space.workflow("x}y{").blob(), "{p:x%7Dy%7B}:blob");
        assert_eq!(split_claim_member(&claim_member("a:b", "c")), Some(("a:b", "c")));
        assert_eq!(split_claim_member(&claim_member("a", "b:c")), Some(("a", "b:c")));
        assert_ne!(claim_member("a:b", "c"), claim_member("a", "b:c"));
        assert_eq!(KeySpace::new("a*b").pattern(), "\\{a\\*b[:}]*");
        let space = KeySpace::new("p:*");
        assert_eq!(space.workflow_key_pattern(Own::Events), "\\{p%3A\\*:*}:events");
        assert_eq!(space.workflow_key_pattern(Own::Claims), "\\{p%3A\\*:*}:claims");
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
        let space = KeySpace::new("p:q");
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
        expected.extend(space.globals.iter().cloned());
        assert_eq!(args, expected);
        assert_eq!(args.len(), SCRIPT_KEYS);
        assert_eq!(keys.signals(), "{p%3Aq:i%3Ad}:signals");
    }
}
