//! Relationship fields (`Depends`, `Pre-Depends`, `Provides`, `Conflicts`, ...): groups
//! separated by commas, each a choice of alternatives separated by `|`, each a package name
//! with an optional version constraint (Debian policy 7.1).

use super::version::{Relation, Version};

/// One alternative of a relationship: `name[:qualifier] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative<'a> {
    /// The package name, without its architecture qualifier.
    pub name: &'a str,
    pub constraint: Option<(Relation, Version)>,
}

/// The groups of a field such as `a (>= 1) | b:any, c [amd64] <!nocheck>`, each yielding its
/// alternatives. Malformed alternatives are left out, so a group may yield none.
pub fn groups(text: &str) -> impl Iterator<Item = impl Iterator<Item = Alternative<'_>>> {
    text.split(',')
        .map(|group| group.split('|').filter_map(alternative))
}

/// One alternative, or `None` when it is malformed.
pub fn alternative(text: &str) -> Option<Alternative<'_>> {
    // Architecture restrictions `[...]` and build profiles `<...>` only appear in source
    // packages; they follow the name or the `(...)` constraint and are cut off so a stray one
    // cannot break a binary index.
    let (name_part, constraint_part) = match text.split_once('(') {
        Some((name, rest)) => (
            name.trim(),
            Some(rest.split(')').next().unwrap_or("").trim()),
        ),
        None => (text.split(['[', '<']).next().unwrap_or("").trim(), None),
    };
    // `:any` and `:native` qualify the architecture; which package meets them is the reader's
    // business.
    let name = name_part.split(':').next().unwrap_or("").trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let constraint = match constraint_part {
        None => None,
        Some(spec) => {
            let split = spec
                .find(|c: char| !"<>=".contains(c))
                .unwrap_or(spec.len());
            let relation: Relation = spec[..split].trim().parse().ok()?;
            let version: Version = spec[split..].trim().parse().ok()?;
            Some((relation, version))
        }
    };
    Some(Alternative { name, constraint })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> Vec<Vec<String>> {
        groups(text)
            .map(|group| {
                group
                    .map(|alternative| match alternative.constraint {
                        None => alternative.name.to_string(),
                        Some((relation, version)) => {
                            format!("{} ({relation} {version})", alternative.name)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn groups_alternatives_qualifiers_and_constraints() {
        assert_eq!(
            shown("libc6 (>= 2.36), zlib1g | libz-alt [amd64],\n python3:any (>>3.11~) <!nocheck>"),
            [
                vec!["libc6 (>= 2.36)"],
                vec!["zlib1g", "libz-alt"],
                vec!["python3 (>> 3.11~)"],
            ]
        );
        assert_eq!(
            shown("foo (< 1)"),
            [["foo (<= 1)"]],
            "the obsolete `<` means `<=`"
        );
    }

    #[test]
    fn malformed_alternatives_are_left_out() {
        assert_eq!(
            shown("two words | ok, (>= 1), bad (~ 1) | worse (>= ), "),
            [vec!["ok"], vec![], vec![], vec![]]
        );
    }
}
