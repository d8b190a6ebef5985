//! Dependencies between entries: `depends_on = ["get_user:{id}"]`.
//!
//! An action that depends on another's key is tagged, per entry, with that
//! key's text (under [`DEP_TAG`]); invalidating a key invalidates the tag
//! in every cache that declares dependencies, here, in the stores outside
//! the process and on the other nodes, as tags travel.
//!
//! Transitivity is resolved on the templates, once: when `page:{id}`
//! depends on `user_profile:{id}`, and `user_profile`'s key template is
//! `user_profile:{uid}` with dependency `get_user:{uid}`, then `page`'s
//! entries also carry `get_user:{id}`. So invalidating `get_user:7`
//! reaches `page:7` in one step, wherever it lives, even where no
//! `user_profile` entry is held. Every action with dependencies submits
//! its [`DependencySpec`] at link time, so the closure knows them all
//! before any cache is built; cycles end because each template is taken
//! once.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use cache_common::template::{self, Piece};

/// What dependency tags start with, apart from the tags users give.
pub const DEP_TAG: &str = "~dep:";

/// An action's key template and the key templates it depends on, both over
/// its argument names; submitted by `#[cached(depends_on = [...])]`.
pub struct DependencySpec {
    /// The action's key template, such as `user_profile:{id}`.
    pub key: &'static str,
    /// The templates of the keys it depends on, such as `get_user:{id}`.
    pub deps: &'static [&'static str],
    /// Builds the action's cache (free functions; a service builds its
    /// own), so that an invalidation reaches its tier before its first call.
    pub init: Option<fn()>,
}
inventory::collect!(DependencySpec);

static BUILT: AtomicBool = AtomicBool::new(false);

/// Records that a cache with dependencies was built.
pub(crate) fn note_built() {
    BUILT.store(true, Ordering::Relaxed);
}

/// Whether anything in the process declares dependencies: if not, an
/// invalidation has no dependants to look for.
pub(crate) fn declared() -> bool {
    static SPECS: OnceLock<bool> = OnceLock::new();
    *SPECS.get_or_init(|| {
        inventory::iter::<DependencySpec>
            .into_iter()
            .next()
            .is_some()
    }) || BUILT.load(Ordering::Relaxed)
}

/// Builds the caches of every action with dependencies, once.
pub(crate) fn init_dependants() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for s in inventory::iter::<DependencySpec> {
            if let Some(init) = s.init {
                init();
            }
        }
    });
}

/// The templates an action's entries are tagged with: `deps` (over its
/// argument names) and, transitively, what the keys they name depend on,
/// as the submitted specs declare.
pub(crate) fn closure(deps: &[&str]) -> Vec<Vec<Piece>> {
    let specs: Vec<(&str, &[&str])> = inventory::iter::<DependencySpec>
        .into_iter()
        .map(|s| (s.key, s.deps))
        .collect();
    closure_among(deps, &specs)
}

/// [`closure`] over the given `(key template, dependencies)` pairs.
pub(crate) fn closure_among(deps: &[&str], specs: &[(&str, &[&str])]) -> Vec<Vec<Piece>> {
    let parsed: Vec<(Vec<Piece>, Vec<Vec<Piece>>)> = specs
        .iter()
        .filter_map(|(k, ds)| {
            let k = template::parse(k).ok()?;
            let ds = ds.iter().filter_map(|d| template::parse(d).ok()).collect();
            Some((k, ds))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut queue: Vec<Vec<Piece>> = deps
        .iter()
        .filter_map(|d| template::parse(d).ok())
        .collect();
    while let Some(d) = queue.pop() {
        if !seen.insert(show(&d)) {
            continue;
        }
        for (key, their_deps) in &parsed {
            let Some(binding) = align(&d, key) else {
                continue;
            };
            for e in their_deps {
                if let Some(sub) = substitute(e, &binding) {
                    queue.push(sub);
                }
            }
        }
        out.push(d);
    }
    out
}

/// One character of a dependency template's text, or one of its fields.
#[derive(Clone, Copy, PartialEq)]
enum Atom<'a> {
    Char(char),
    Field(&'a str),
}

/// When `d` names keys of the template `key` (its text matches, and each of
/// `key`'s fields stands for one of `d`'s fields or for literal text):
/// what each of `key`'s fields is in `d`. `profile:{id}:en` names keys of
/// `profile:{uid}:{lang}` with `uid` = `{id}` and `lang` = `en`.
fn align(d: &[Piece], key: &[Piece]) -> Option<Vec<(Piece, String)>> {
    let atoms: Vec<Atom> = d
        .iter()
        .flat_map(|p| match p {
            Piece::Text(t) => t.chars().map(Atom::Char).collect::<Vec<_>>(),
            Piece::Field(f) => vec![Atom::Field(f)],
        })
        .collect();
    let mut binding = Vec::new();
    matches(&atoms, key, &mut binding).then_some(binding)
}

/// Whether `atoms` match `key` entirely, extending `binding`.
fn matches(atoms: &[Atom], key: &[Piece], binding: &mut Vec<(Piece, String)>) -> bool {
    let Some((first, rest)) = key.split_first() else {
        return atoms.is_empty();
    };
    match first {
        Piece::Text(t) => {
            let n = t.chars().count();
            atoms.len() >= n
                && atoms[..n]
                    .iter()
                    .zip(t.chars())
                    .all(|(a, c)| *a == Atom::Char(c))
                && matches(&atoms[n..], rest, binding)
        }
        Piece::Field(f) => {
            // A field stands for one field of `d`, or for text (at least one
            // character): each split is tried in turn.
            for n in 1..=atoms.len() {
                let piece = match &atoms[..n] {
                    [Atom::Field(g)] => Piece::Field(g.to_string()),
                    run if run.iter().all(|a| matches!(a, Atom::Char(_))) => Piece::Text(
                        run.iter()
                            .map(|a| match a {
                                Atom::Char(c) => *c,
                                Atom::Field(_) => unreachable!("only characters"),
                            })
                            .collect(),
                    ),
                    _ => break,
                };
                if let Some((bound, _)) = binding.iter().find(|(_, g)| g == f) {
                    if *bound != piece {
                        continue;
                    }
                    if matches(&atoms[n..], rest, binding) {
                        return true;
                    }
                    continue;
                }
                binding.push((piece, f.clone()));
                if matches(&atoms[n..], rest, binding) {
                    return true;
                }
                binding.pop();
            }
            false
        }
    }
}

/// `e` with each field replaced by what it is bound to; `None` when `e`
/// names a field the binding lacks.
fn substitute(e: &[Piece], binding: &[(Piece, String)]) -> Option<Vec<Piece>> {
    let mut out: Vec<Piece> = Vec::new();
    for p in e {
        let q = match p {
            Piece::Text(t) => Piece::Text(t.clone()),
            Piece::Field(f) => binding.iter().find(|(_, g)| g == f)?.0.clone(),
        };
        // Adjacent texts merge, as the parser would leave them.
        match (out.last_mut(), q) {
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (_, q) => out.push(q),
        }
    }
    Some(out)
}

/// A template as text (braces in text doubled).
fn show(t: &[Piece]) -> String {
    let mut s = String::new();
    for p in t {
        match p {
            Piece::Text(x) => s.push_str(&x.replace('{', "{{").replace('}', "}}")),
            Piece::Field(f) => {
                s.push('{');
                s.push_str(f);
                s.push('}');
            }
        }
    }
    s
}

/// `t` rendered with each field's text from `args`; `None` when one is
/// missing (an argument configuration left out of the key).
pub(crate) fn render(t: &[Piece], args: &[(&'static str, String)]) -> Option<String> {
    let mut s = String::new();
    for p in t {
        match p {
            Piece::Text(x) => s.push_str(x),
            Piece::Field(f) => s.push_str(&args.iter().find(|(n, _)| n == f)?.1),
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(deps: &[&str], specs: &[(&str, &[&str])]) -> Vec<String> {
        let mut v: Vec<String> = closure_among(deps, specs).iter().map(|t| show(t)).collect();
        v.sort();
        v
    }

    #[test]
    fn dependencies_close_over_the_keys_they_name() {
        let specs: &[(&str, &[&str])] = &[
            (
                "user_profile:{uid}",
                &["get_user:{uid}", "avatar:{uid}:small"],
            ),
            ("page:{id}", &["user_profile:{id}"]),
        ];
        assert_eq!(
            shown(&["user_profile:{id}"], specs),
            ["avatar:{id}:small", "get_user:{id}", "user_profile:{id}"]
        );
        // A literal where the key has a field binds it.
        assert_eq!(
            shown(&["user_profile:admin"], specs),
            ["avatar:admin:small", "get_user:admin", "user_profile:admin"]
        );
        assert_eq!(
            shown(&["user_profile:{a}:{b}"], specs),
            ["user_profile:{a}:{b}"],
            "two fields cannot stand for one"
        );
        let multi: &[(&str, &[&str])] = &[
            ("profile:{id}:{lang}", &["account:{id}"]),
            ("page:{id}", &["profile:{id}:en"]),
        ];
        assert_eq!(
            shown(&["profile:{id}:en"], multi),
            ["account:{id}", "profile:{id}:en"],
            "a field of the key given as text"
        );
    }

    #[test]
    fn cycles_end() {
        let specs: &[(&str, &[&str])] = &[("a:{x}", &["b:{x}"]), ("b:{y}", &["a:{y}"])];
        assert_eq!(shown(&["b:{id}"], specs), ["a:{id}", "b:{id}"]);
        let selfish: &[(&str, &[&str])] = &[("a:{x}", &["a:{x}"])];
        assert_eq!(shown(&["a:{id}"], selfish), ["a:{id}"]);
    }

    #[test]
    fn a_field_bound_twice_must_agree() {
        let specs: &[(&str, &[&str])] = &[("pair:{x}:{x}", &["one:{x}"])];
        assert_eq!(shown(&["pair:{a}:{a}"], specs), ["one:{a}", "pair:{a}:{a}"]);
        assert_eq!(shown(&["pair:{a}:{b}"], specs), ["pair:{a}:{b}"]);
    }

    #[test]
    fn rendering_needs_every_field() {
        let t = template::parse("get_user:{id}").unwrap();
        assert_eq!(
            render(&t, &[("id", "7".into())]).as_deref(),
            Some("get_user:7")
        );
        assert_eq!(render(&t, &[("other", "7".into())]), None);
    }
}
