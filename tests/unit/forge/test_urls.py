"""Table tests of forge URL parsing across GitHub, GitLab and Forgejo."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devaipod.config import ForgeSettings, UserConfig, parse_config
from devaipod.errors import UserError
from devaipod.forge.urls import ForgeUrl, api_base_url, graphql_url, parse_forge_url

CONFIG = parse_config(
    """
[forges."ghe.example.com"]
kind = "github"

[forges."gitlab.example.org"]
kind = "gitlab"

[forges."git.example.net:3000"]
kind = "forgejo"

[forges."code.example.com"]
kind = "forgejo"
path_prefix = "/git"

[forges."127.0.0.1:8080"]
kind = "github"
api_url = "http://127.0.0.1:8080"

[forges."[::1]:8081"]
kind = "gitlab"
""",
    "test config",
)

GH = "github"
GL = "gitlab"
FJ = "forgejo"

# (url, kind, host, repo_path, item, number)
VALID_FORMS: list[tuple[str, str, str, str, str | None, int | None]] = [
    # GitHub issues and pull requests
    ("https://github.com/octo/hello/issues/7", GH, "github.com", "octo/hello", "issue", 7),
    ("https://github.com/octo/hello/issues/7/", GH, "github.com", "octo/hello", "issue", 7),
    ("https://github.com/octo/hello/issues/7#issuecomment-12", GH, "github.com", "octo/hello",
     "issue", 7),
    ("https://github.com/octo/hello/issues/7?q=1", GH, "github.com", "octo/hello", "issue", 7),
    ("https://github.com/octo/hello/pull/42", GH, "github.com", "octo/hello", "pull_request", 42),
    ("https://github.com/octo/hello/pull/42/files", GH, "github.com", "octo/hello",
     "pull_request", 42),
    ("https://github.com/octo/hello/pull/42/commits/abc123", GH, "github.com", "octo/hello",
     "pull_request", 42),
    ("https://github.com/octo/hello/pull/42/checks?check_run_id=1", GH, "github.com",
     "octo/hello", "pull_request", 42),
    ("https://github.com/octo/hello/pull/42#discussion_r1", GH, "github.com", "octo/hello",
     "pull_request", 42),
    ("https://GitHub.COM/Octo/Hello/issues/3", GH, "github.com", "Octo/Hello", "issue", 3),
    ("https://github.com./octo/hello/issues/3", GH, "github.com", "octo/hello", "issue", 3),
    ("https://github.com:443/octo/hello/issues/3", GH, "github.com", "octo/hello", "issue", 3),
    ("  https://github.com/octo/hello/issues/3  ", GH, "github.com", "octo/hello", "issue", 3),
    ("https://github.com/octo/.github/issues/1", GH, "github.com", "octo/.github", "issue", 1),
    ("https://github.com/my-org/my_repo.js/issues/12", GH, "github.com", "my-org/my_repo.js",
     "issue", 12),
    # GitHub repository and clone URLs
    ("https://github.com/octo/hello", GH, "github.com", "octo/hello", None, None),
    ("https://github.com/octo/hello/", GH, "github.com", "octo/hello", None, None),
    ("https://github.com/octo/hello.git", GH, "github.com", "octo/hello", None, None),
    ("git@github.com:octo/hello.git", GH, "github.com", "octo/hello", None, None),
    ("git@github.com:octo/hello", GH, "github.com", "octo/hello", None, None),
    ("github.com:octo/hello.git", GH, "github.com", "octo/hello", None, None),
    ("ssh://git@github.com/octo/hello.git", GH, "github.com", "octo/hello", None, None),
    ("ssh://git@github.com:22/octo/hello.git", GH, "github.com", "octo/hello", None, None),
    ("ssh://git@github.com:2222/octo/hello.git", GH, "github.com", "octo/hello", None, None),
    # GitHub Enterprise Server
    ("https://ghe.example.com/team/tool/issues/5", GH, "ghe.example.com", "team/tool", "issue", 5),
    ("https://ghe.example.com/team/tool/pull/6/files", GH, "ghe.example.com", "team/tool",
     "pull_request", 6),
    ("git@ghe.example.com:team/tool.git", GH, "ghe.example.com", "team/tool", None, None),
    ("http://127.0.0.1:8080/octo/hello/issues/1", GH, "127.0.0.1:8080", "octo/hello", "issue", 1),
    # GitLab
    ("https://gitlab.com/group/project/-/issues/9", GL, "gitlab.com", "group/project", "issue", 9),
    ("https://gitlab.com/group/sub/project/-/issues/9", GL, "gitlab.com", "group/sub/project",
     "issue", 9),
    ("https://gitlab.com/a/b/c/d/project/-/issues/9", GL, "gitlab.com", "a/b/c/d/project",
     "issue", 9),
    ("https://gitlab.com/group/project/-/merge_requests/3", GL, "gitlab.com", "group/project",
     "pull_request", 3),
    ("https://gitlab.com/group/project/-/merge_requests/3/diffs", GL, "gitlab.com",
     "group/project", "pull_request", 3),
    ("https://gitlab.com/group/project/-/merge_requests/3#note_77", GL, "gitlab.com",
     "group/project", "pull_request", 3),
    ("https://gitlab.com/group/project/-/work_items/11", GL, "gitlab.com", "group/project",
     "issue", 11),
    ("https://gitlab.com/group/project/issues/9", GL, "gitlab.com", "group/project", "issue", 9),
    ("https://gitlab.com/group/sub/project/merge_requests/4", GL, "gitlab.com",
     "group/sub/project", "pull_request", 4),
    ("https://gitlab.com/group/project/-/issues/9/", GL, "gitlab.com", "group/project", "issue", 9),
    ("https://gitlab.com/group/project", GL, "gitlab.com", "group/project", None, None),
    ("https://gitlab.com/group/sub/project.git", GL, "gitlab.com", "group/sub/project", None, None),
    ("git@gitlab.com:group/sub/project.git", GL, "gitlab.com", "group/sub/project", None, None),
    ("ssh://git@gitlab.com/group/project.git", GL, "gitlab.com", "group/project", None, None),
    ("https://gitlab.example.org/infra/tools/-/issues/1", GL, "gitlab.example.org", "infra/tools",
     "issue", 1),
    ("https://gitlab.example.org/infra/tools/-/merge_requests/2", GL, "gitlab.example.org",
     "infra/tools", "pull_request", 2),
    ("git@gitlab.example.org:infra/tools.git", GL, "gitlab.example.org", "infra/tools", None, None),
    ("http://[::1]:8081/g/p/-/issues/5", GL, "[::1]:8081", "g/p", "issue", 5),
    # Forgejo, Gitea, Codeberg
    ("https://codeberg.org/forgejo/forgejo/issues/100", FJ, "codeberg.org", "forgejo/forgejo",
     "issue", 100),
    ("https://codeberg.org/forgejo/forgejo/pulls/101", FJ, "codeberg.org", "forgejo/forgejo",
     "pull_request", 101),
    ("https://codeberg.org/forgejo/forgejo/pulls/101/files", FJ, "codeberg.org",
     "forgejo/forgejo", "pull_request", 101),
    ("https://codeberg.org/forgejo/forgejo/issues/100#issuecomment-5", FJ, "codeberg.org",
     "forgejo/forgejo", "issue", 100),
    ("https://codeberg.org/forgejo/forgejo.git", FJ, "codeberg.org", "forgejo/forgejo", None, None),
    ("git@codeberg.org:forgejo/forgejo.git", FJ, "codeberg.org", "forgejo/forgejo", None, None),
    ("https://gitea.com/gitea/tea/issues/3", FJ, "gitea.com", "gitea/tea", "issue", 3),
    ("https://gitea.com/gitea/tea/pulls/4", FJ, "gitea.com", "gitea/tea", "pull_request", 4),
    ("https://git.example.net:3000/me/proj/issues/2", FJ, "git.example.net:3000", "me/proj",
     "issue", 2),
    ("https://git.example.net:3000/me/proj/pulls/3/commits", FJ, "git.example.net:3000",
     "me/proj", "pull_request", 3),
    ("https://code.example.com/git/me/proj/issues/8", FJ, "code.example.com", "me/proj",
     "issue", 8),
    ("https://code.example.com/git/me/proj.git", FJ, "code.example.com", "me/proj", None, None),
    ("ssh://git@codeberg.org:2222/me/proj.git", FJ, "codeberg.org", "me/proj", None, None),
]

INVALID_FORMS: list[tuple[str, str]] = [
    ("", "empty"),
    ("https://user:secret@github.com/octo/hello/issues/1", "user name or password"),
    ("https://token@github.com/octo/hello", "user name or password"),
    ("ssh://git:pw@github.com/octo/hello.git", "password"),
    ("ftp://github.com/octo/hello", "scheme"),
    ("https://github.com/octo/../hello/issues/1", ". or .. segment"),
    ("https://github.com/octo/%2e%2e/issues/1", ". or .. segment"),
    ("https://github.com/octo%2Fevil/hello/issues/1", "encoded slash"),
    ("https://github.com/octo/hello%2fx/issues/1", "encoded slash"),
    ("https://github.com/octo//hello/issues/1", "empty segment"),
    ("https://github.com/octo", "owner and a repository"),
    ("https://github.com/octo/hello/issues/abc", "not an issue or pull request number"),
    ("https://github.com/octo/hello/issues/0", "not an issue or pull request number"),
    ("https://github.com/octo/hello/pulls/3", "not a repository"),
    ("https://github.com/octo/hello/tree/main", "not a repository"),
    ("https://github.com/oc to/hello", "spaces"),
    ("https://github.com/octo/hel$lo/issues/1", "not a valid owner"),
    ("https://codeberg.org/a/b/pull/3", "not a repository"),
    ("https://gitlab.com/project/-/issues/1", "group and a project"),
    ("https://gitlab.com/group/project/-/pipelines/1", "not a project"),
    ("https://gitlab.com/group/project/-/", "nothing follows"),
    ("https://code.example.com/me/proj/issues/8", "prefix"),
    ("github.com/octo/hello", "neither"),
    ("https://github.com/octo/hello\\..\\x", "backslashes"),
]


@pytest.mark.parametrize(("url", "kind", "host", "repo_path", "item", "number"), VALID_FORMS)
def test_parse_forge_url_valid_forms(
    url: str, kind: str, host: str, repo_path: str, item: str | None, number: int | None
) -> None:
    parsed = parse_forge_url(url, CONFIG)

    assert parsed.kind == kind
    assert parsed.host == host
    assert parsed.repo_path == repo_path
    assert parsed.item == item
    assert parsed.number == number


def test_url_table_has_sixty_forms() -> None:
    assert len(VALID_FORMS) + len(INVALID_FORMS) >= 60
    assert {row[1] for row in VALID_FORMS} == {GH, GL, FJ}


@pytest.mark.parametrize(("url", "expected_reason"), INVALID_FORMS)
def test_parse_forge_url_rejects_invalid(url: str, expected_reason: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_forge_url(url, CONFIG)

    assert expected_reason in raised.value.message


URLS_WITH_SECRETS = [
    "https://x-access-token:S3cretTok@github.com/o/r/issues/1",
    "https://S3cretTok@github.com/o/r",
    "http://user:S3cretTok@gitlab.com/g/p/-/issues/2",
    "ssh://git:S3cretTok@codeberg.org/o/r.git",
    "git:S3cretTok@github.com:o/r.git",
    "https://git.unknown.example/o/r?private_token=S3cretTok",
    "https://git.unknown.example/o/r#S3cretTok",
    "https://S3cretTok@github.com/o/r with space",
]


@pytest.mark.parametrize("url", URLS_WITH_SECRETS)
def test_url_error_hides_credentials(url: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_forge_url(url, CONFIG)

    assert "S3cretTok" not in raised.value.render()


def test_unknown_host_error_shows_config_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVAIPOD_CONFIG", "/tmp/devaipod-test/config.toml")

    with pytest.raises(UserError) as raised:
        parse_forge_url("https://git.unknown.example/o/r/issues/1", UserConfig())

    assert "git.unknown.example" in raised.value.message
    assert raised.value.fix is not None
    assert '[forges."git.unknown.example"]' in raised.value.fix
    assert 'kind = "github"' in raised.value.fix
    assert "/tmp/devaipod-test/config.toml" in raised.value.fix


def test_unknown_host_error_keeps_port() -> None:
    with pytest.raises(UserError) as raised:
        parse_forge_url("http://localhost:9999/o/r", UserConfig())

    assert raised.value.fix is not None
    assert '[forges."localhost:9999"]' in raised.value.fix


def test_idna_host_is_encoded() -> None:
    config = parse_config('[forges."xn--bcher-kva.example"]\nkind = "forgejo"\n', "test")

    parsed = parse_forge_url("https://bücher.example/o/r/issues/2", config)

    assert parsed.host == "xn--bcher-kva.example"


def test_item_url_is_canonical() -> None:
    cases = {
        "https://github.com/o/r/pull/5/files": "https://github.com/o/r/pull/5",
        "https://gitlab.com/g/s/p/merge_requests/5": "https://gitlab.com/g/s/p/-/merge_requests/5",
        "https://gitlab.com/g/p/-/work_items/5": "https://gitlab.com/g/p/-/issues/5",
        "https://codeberg.org/o/r/pulls/5#x": "https://codeberg.org/o/r/pulls/5",
        "https://code.example.com/git/o/r/issues/5": "https://code.example.com/git/o/r/issues/5",
    }
    for url, expected in cases.items():
        assert parse_forge_url(url, CONFIG).item_url == expected, url


def test_clone_url_from_ssh_form_is_https() -> None:
    parsed = parse_forge_url("git@gitlab.com:g/sub/p.git", CONFIG)

    assert parsed.clone_url == "https://gitlab.com/g/sub/p.git"
    assert parsed.item_url is None


def test_repo_owner_and_name_split() -> None:
    parsed = parse_forge_url("https://gitlab.com/g/sub/p/-/issues/1", CONFIG)

    assert parsed.owner == "g/sub"
    assert parsed.name == "p"
    assert parsed.without_item() == ForgeUrl("gitlab", "gitlab.com", "https", "g/sub/p")


def test_api_base_url_per_forge() -> None:
    def base(url: str) -> str:
        parsed = parse_forge_url(url, CONFIG)
        settings = CONFIG.forge_settings(parsed.host)
        assert settings is not None
        return api_base_url(parsed, settings)

    assert base("https://github.com/o/r") == "https://api.github.com"
    assert base("https://ghe.example.com/o/r") == "https://ghe.example.com/api/v3"
    assert base("https://gitlab.example.org/g/p") == "https://gitlab.example.org/api/v4"
    assert base("https://codeberg.org/o/r") == "https://codeberg.org/api/v1"
    assert base("https://code.example.com/git/o/r") == "https://code.example.com/git/api/v1"
    assert base("http://127.0.0.1:8080/o/r") == "http://127.0.0.1:8080"


def test_graphql_url_for_github_hosts() -> None:
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3") == "https://ghe.example.com/api/graphql"


def test_forge_settings_prefers_declared_host() -> None:
    config = parse_config('[forges."github.com"]\nkind = "github"\ntoken_secret = "gh"\n', "t")

    settings = config.forge_settings("github.com")

    assert settings == ForgeSettings(kind="github", token_secret="gh")


NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True).filter(
    lambda name: name not in (".", "..") and not name.endswith(".git")
)


@settings(max_examples=200, deadline=None)
@given(
    host=st.sampled_from(["github.com", "gitlab.com", "codeberg.org", "ghe.example.com",
                          "code.example.com"]),
    path=st.lists(NAMES, min_size=2, max_size=4),
    item=st.sampled_from([None, "issue", "pull_request"]),
    number=st.integers(min_value=1, max_value=10**9),
)
def test_item_url_round_trips(host: str, path: list[str], item: str | None,
                              number: int) -> None:
    settings_for_host = CONFIG.forge_settings(host)
    assert settings_for_host is not None
    if settings_for_host.kind != "gitlab":
        path = path[:2]
    if settings_for_host.kind == "gitlab" and "-" in path:
        return
    prefix = settings_for_host.path_prefix or ""
    repo_url = f"https://{host}{prefix}/{'/'.join(path)}"
    original = parse_forge_url(repo_url, CONFIG)
    if item is not None:
        original = ForgeUrl(original.kind, original.host, original.scheme, original.repo_path,
                            item, number, original.path_prefix)  # type: ignore[arg-type]

    url = original.item_url or original.clone_url
    reparsed = parse_forge_url(url, CONFIG)

    assert reparsed == original


def test_http_kept_only_for_declared_hosts() -> None:
    well_known = parse_forge_url("http://github.com/o/r/issues/1", CONFIG)
    declared = parse_forge_url("http://127.0.0.1:8080/o/r/issues/1", CONFIG)

    assert well_known.scheme == "https"
    assert well_known.item_url == "https://github.com/o/r/issues/1"
    assert declared.scheme == "http"
