//! "Did you mean" hints for misspelt node names, properties and keywords.

/// Words users bring from Dockerfiles, Compose files and Vagrantfiles, with envkit's word.
const FAMILIAR_WORDS: &[(&str, &str)] = &[
    ("from", "base"),
    ("image", "base"),
    ("package", "packages"),
    ("install", "packages"),
    ("apt", "packages"),
    ("run", "setup"),
    ("env", "vars"),
    ("environment", "vars"),
    ("variables", "vars"),
    ("var", "vars"),
    ("working_dir", "workdir"),
    ("working-dir", "workdir"),
    ("cwd", "workdir"),
    ("volumes", "volume"),
    ("mounts", "mount"),
    ("bind", "mount"),
    ("ports", "port"),
    ("expose", "port"),
    ("links", "peer"),
    ("link", "peer"),
    ("depends_on", "peer"),
    ("depends-on", "peer"),
    ("peers", "peer"),
    ("services", "peer"),
    ("cmd", "service"),
    ("command", "service"),
    ("entrypoint", "service"),
    ("healthcheck", "ready"),
    ("net", "network"),
    ("network_mode", "network"),
    ("target", "at"),
    ("path", "at"),
    ("dest", "at"),
    ("destination", "at"),
    ("ro", "readonly"),
    ("read-only", "readonly"),
    ("read_only", "readonly"),
    ("input", "inputs"),
    ("keyfile", "keyring"),
    ("key", "keyring"),
];

/// The candidate closest to `input`, if any is close enough to be what the user meant.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lowered = input.to_ascii_lowercase();
    if let Some(&(_, word)) = FAMILIAR_WORDS
        .iter()
        .find(|(familiar, _)| *familiar == lowered)
        && let Some(found) = candidates.iter().find(|c| **c == word)
    {
        return Some(found);
    }
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(&lowered, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= allowed_distance(candidate))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// One typo in short words, two in longer ones: more would suggest unrelated words.
fn allowed_distance(word: &str) -> usize {
    match word.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    }
}

/// " (did you mean `x`?)"-style hint text, or a list of what is allowed.
pub fn hint(input: &str, candidates: &[&str]) -> String {
    match did_you_mean(input, candidates) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("expected one of: {}", quoted_list(candidates)),
    }
}

/// `a`, `b` and `c`, each in backticks.
pub fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &[&str] = &["name", "base", "packages", "volume", "vars", "port"];

    #[test]
    fn typos_find_the_intended_word() {
        assert_eq!(did_you_mean("pakages", NODES), Some("packages"));
        assert_eq!(did_you_mean("bsae", NODES), Some("base"));
        assert_eq!(did_you_mean("volumes", NODES), Some("volume"));
    }

    #[test]
    fn words_from_other_tools_map_to_envkit_words() {
        assert_eq!(did_you_mean("FROM", NODES), Some("base"));
        assert_eq!(did_you_mean("environment", NODES), Some("vars"));
        assert_eq!(did_you_mean("expose", NODES), Some("port"));
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        assert_eq!(did_you_mean("kubernetes", NODES), None);
        assert_eq!(
            hint("zz", &["host", "root"]),
            "expected one of: `host` or `root`"
        );
    }
}
