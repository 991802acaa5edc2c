// One pull-request comment per gated config, kept up to date ("sticky"), for actions/github-script.
//
// The comment to edit is the NEWEST comment whose first line is the body's marker line
// (<!-- llmops-gate: CONFIG -->) AND whose author is the token's own identity (GraphQL `viewer`;
// an app such as github-actions is "NAME[bot]" of type Bot in the REST API), as marocchino/sticky-pull-request-comment
// does: a marker anyone can type in their own comment is never edited, nor mistaken for ours.
// Used by ../action.yml (the gate's own job) and ./action.yml (the workflow_run poster).
'use strict';

const MARKER_PREFIX = '<!-- llmops-gate: ';
const COMMENT_LIMIT = 65536; // GitHub refuses a longer comment body (422)

function fit(body) {
  if (body.length <= COMMENT_LIMIT) return body;
  const note = "\n\n_Comment cut to fit GitHub's size limit: see the job summary and the HTML report._\n";
  const head = body.slice(0, COMMENT_LIMIT - note.length);
  return head.slice(0, head.lastIndexOf('\n') + 1 || head.length) + note;
}

async function viewer(github, core) {
  try {
    const { viewer: v } = await github.graphql('query { viewer { login __typename } }');
    return v && v.login ? { login: v.login, bot: v.__typename === 'Bot' } : null;
  } catch (err) {
    core.warning(`cannot tell which account the token belongs to (${err.message}): adding a new comment`);
    return null;
  }
}

// A bot (the GITHUB_TOKEN's github-actions, an app) is "NAME" in GraphQL and "NAME[bot]" of type Bot in REST;
// a person's token matches a User of the same login only.
function writtenBy(me) {
  if (me.bot) {
    const name = me.login.replace(/\[bot\]$/, '');
    return (user) => !!user && user.type === 'Bot' && (user.login === name || user.login === `${name}[bot]`);
  }
  return (user) => !!user && user.type !== 'Bot' && user.login === me.login;
}

// Returns "created", "updated" or "skipped"; a read-only token (a fork's pull request) is a warning, not an error.
module.exports = async function stickyComment({ github, context, core }, { body, issueNumber }) {
  const marker = body.split('\n')[0];
  if (!marker.startsWith(MARKER_PREFIX) || !marker.endsWith(' -->')) {
    core.warning('the comment file has no llmops marker line: not commenting');
    return 'skipped';
  }
  const where = { owner: context.repo.owner, repo: context.repo.repo, issue_number: Number(issueNumber) };
  const text = fit(body);
  try {
    const me = await viewer(github, core);
    let mine;
    if (me) {
      const ours = writtenBy(me);
      const comments = await github.paginate(github.rest.issues.listComments, { ...where, per_page: 100 });
      mine = comments
        .filter((c) => ours(c.user) && (c.body || '').split('\n')[0] === marker)
        .sort((a, b) => b.id - a.id)[0]; // newest first
    }
    if (mine) {
      await github.rest.issues.updateComment({ owner: where.owner, repo: where.repo, comment_id: mine.id, body: text });
      return 'updated';
    }
    await github.rest.issues.createComment({ ...where, body: text });
    return 'created';
  } catch (err) {
    if (err.status !== 403 && err.status !== 404) throw err;
    core.warning(`cannot comment on the pull request (${err.status}: ${err.message}); see the job summary`);
    return 'skipped';
  }
};
