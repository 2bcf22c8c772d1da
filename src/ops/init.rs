//! `env init`: a commented `env.kdl` suited to what the folder holds.

use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::spec::{ENV_FILE_NAME, parse_str, rules};

/// Releases offered by the prompt, newest stable first.
pub const OFFERED_RELEASES: &[&str] = &["bookworm", "trixie"];

/// What a project file says about the packages the project needs.
struct Clue {
    file: &'static str,
    packages: &'static [&'static str],
}

const CLUES: &[Clue] = &[
    Clue {
        file: "pyproject.toml",
        packages: &["python3", "python3-pip", "python3-venv"],
    },
    Clue {
        file: "requirements.txt",
        packages: &["python3", "python3-pip", "python3-venv"],
    },
    Clue {
        file: "setup.py",
        packages: &["python3", "python3-pip", "python3-venv"],
    },
    Clue {
        file: "package.json",
        packages: &["nodejs", "npm"],
    },
    Clue {
        file: "Cargo.toml",
        packages: &["cargo", "rustc"],
    },
    Clue {
        file: "go.mod",
        packages: &["golang-go"],
    },
    Clue {
        file: "Gemfile",
        packages: &["ruby", "bundler"],
    },
    Clue {
        file: "pom.xml",
        packages: &["maven", "default-jdk-headless"],
    },
    Clue {
        file: "CMakeLists.txt",
        packages: &["cmake", "build-essential"],
    },
    Clue {
        file: "Makefile",
        packages: &["make"],
    },
    Clue {
        file: ".git",
        packages: &["git"],
    },
];

/// The answers that shape the file.
pub struct Answers {
    pub name: String,
    pub release: String,
    pub packages: Vec<String>,
    pub mount_project: bool,
    pub requirements_setup: bool,
}

/// Where `env init` writes: `file`, else `env.kdl` here; an existing file only with `force`.
pub fn target(file: Option<&Path>, force: bool) -> Result<PathBuf> {
    let cwd = super::project::current_dir()?;
    let target = file.map_or_else(|| cwd.join(ENV_FILE_NAME), Path::to_path_buf);
    if target.exists() && !force {
        return Err(Error::user(
            format!("`{}` already exists", target.display()),
            Some("pass `--force` to replace it".into()),
        ));
    }
    Ok(target)
}

/// The folder the env file describes.
pub fn folder_of(target: &Path) -> Result<PathBuf> {
    match target.parent() {
        Some(folder) => Ok(folder.to_path_buf()),
        None => super::project::current_dir(),
    }
}

/// Writes the env file the answers describe.
pub fn write(target: &Path, answers: &Answers) -> Result<()> {
    let text = render(answers);
    // The template must always be a valid env file; a failure here is a bug in envkit.
    if let Err(diagnostics) = parse_str(ENV_FILE_NAME, &text) {
        let first = diagnostics
            .first()
            .map_or_else(String::new, |d| d.message().to_string());
        return Err(Error::user(
            format!("internal error: the generated env.kdl is invalid: {first}"),
            None,
        ));
    }
    std::fs::write(target, text)
        .map_err(|e| Error::io(format!("cannot write `{}`", target.display()), e))
}

pub fn suggest(folder: &Path) -> Answers {
    let mut packages: Vec<String> = Vec::new();
    for clue in CLUES.iter().filter(|clue| folder.join(clue.file).exists()) {
        for package in clue.packages {
            if !packages.iter().any(|p| p == package) {
                packages.push((*package).to_string());
            }
        }
    }
    let folder_name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = Some(rules::sanitize_host_name(&folder_name))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "dev".to_string());
    Answers {
        name,
        release: OFFERED_RELEASES[0].to_string(),
        packages,
        mount_project: true,
        requirements_setup: folder.join("requirements.txt").exists(),
    }
}

pub fn render(answers: &Answers) -> String {
    let mut out = String::new();
    out.push_str(
        "// envkit environment: `env shell` enters it, `env run -- CMD` runs one command.\n",
    );
    out.push_str("// Every node is described in the env.kdl reference of the envkit book.\n\n");
    out.push_str(&format!("name \"{}\"\n\n", answers.name));
    out.push_str("// The Debian release the image starts from.\n");
    out.push_str(&format!("base \"debian:{}\"\n\n", answers.release));
    out.push_str("// Debian packages; `env lock` pins their exact versions in env.lock.\n");
    if answers.packages.is_empty() {
        out.push_str("// packages \"git\" \"curl\"\n\n");
    } else {
        let quoted: Vec<String> = answers
            .packages
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect();
        out.push_str(&format!("packages {}\n\n", quoted.join(" ")));
    }
    out.push_str(
        "// Steps run once at build time and cached as layers; a step reruns only when its\n",
    );
    out.push_str("// command or the files named by `inputs=` change.\n");
    let setup = "setup \"pip install --break-system-packages -r requirements.txt\" inputs=\"requirements.txt\"";
    if answers.requirements_setup {
        out.push_str(&format!("// {setup}\n\n"));
    } else {
        out.push_str("// setup \"make deps\" inputs=\"Makefile\"\n\n");
    }
    out.push_str("// The project folder inside the environment; files created there stay yours.\n");
    let prefix = if answers.mount_project { "" } else { "// " };
    out.push_str(&format!(
        "{prefix}mount \".\" at=\"/work\"\n{prefix}workdir \"/work\"\n\n"
    ));
    out.push_str("// Data that outlives sessions and rebuilds.\n");
    out.push_str("// volume \"cache\" at=\"/var/cache/project\"\n\n");
    out.push_str("// Variables set in every session, and host variables let through.\n");
    out.push_str("// vars {\n//     DEBUG \"1\"\n// }\n// pass \"SSH_AUTH_SOCK\"\n\n");
    out.push_str("// Other environments started beside this one and reached by name.\n");
    out.push_str("// peer \"db\" file=\"envs/postgres.kdl\"\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file `env init --yes` would write for `folder`.
    fn default_text_for(folder: &Path) -> String {
        render(&suggest(folder))
    }

    #[test]
    fn suggestions_follow_the_project_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "pytest\n").unwrap();
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        let text = default_text_for(dir.path());
        assert!(
            text.contains(
                "packages \"python3\" \"python3-pip\" \"python3-venv\" \"nodejs\" \"npm\""
            ),
            "{text}"
        );
        assert!(text.contains("// setup \"pip install"), "{text}");
        let spec = parse_str("env.kdl", &text).unwrap();
        assert_eq!(spec.base.release(), Some("bookworm"));
        assert_eq!(spec.workdir.as_deref(), Some("/work"));
    }

    #[test]
    fn an_empty_folder_still_gets_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = default_text_for(dir.path());
        let spec = parse_str("env.kdl", &text).unwrap();
        assert!(spec.packages.is_empty());
    }
}
