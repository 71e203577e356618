//! Arbitrary bytes as a recipe, a `bakery.toml` and a var file: parsing and validation
//! must never panic, every diagnostic must point inside its file, and a recipe that
//! validates must plan without panicking.
#![no_main]

use bakery_fuzz::plan::{plan_build, PlanInput};
use bakery_fuzz::recipe::variables::VarOverrides;
use bakery_fuzz::recipe::{check_sources, RecipeSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split the input into a recipe, an optional bakery.toml and var file text.
    let mut parts = text.splitn(3, "\n#---\n");
    let recipe = parts.next().unwrap_or_default();
    let config = parts.next();
    let var_file = parts.next();

    let sources = [
        RecipeSource::new("fuzzed", recipe),
        RecipeSource::new(
            "base",
            "[source]\nami = \"ami-0123456789abcdef0\"\n[builder]\nregion = \"eu-west-1\"\nssh_user = \"ubuntu\"\n",
        ),
    ];
    let checked = check_sources(config, &sources);
    for d in checked.diagnostics.iter() {
        let len = if d.file == "bakery.toml" {
            config.unwrap_or_default().len()
        } else if d.file.contains("fuzzed") {
            recipe.len()
        } else {
            sources[1].text.len()
        };
        let lines = len as u32 + 1;
        assert!(d.line >= 1 && d.line <= lines, "{d:?}");
        assert!(d.end_line >= d.line, "{d:?}");
        assert!(d.column >= 1, "{d:?}");
    }
    let _ = checked.set.build_order();
    let _ = checked.set.recipes_for_tag("release-1");
    let _ = checked.set.recipes_touched_by(&["recipes/fuzzed/x.sh"]);
    let _ = checked.set.config.same_tag_pattern("release-1", "fuzzed/v1");

    if checked.is_ok() {
        let mut vars = VarOverrides::default();
        if let Some(v) = var_file {
            let _ = vars.push_file("vars.toml", v);
        }
        for name in ["fuzzed", "base"] {
            let _ = plan_build(
                &checked.set,
                &PlanInput {
                    recipe: name,
                    version: "release-1.0.0",
                    git_sha: "0123456789abcdef0123456789abcdef01234567",
                    build_time: chrono::DateTime::UNIX_EPOCH,
                    vars: &vars,
                    ephemeral: false,
                },
            );
        }
    }
});
