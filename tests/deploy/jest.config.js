// Deployment checks: static ones (compose, Dockerfile, Prometheus, Grafana) and `pnpm stack`.
module.exports = { ...require('../../jest.preset.js'), displayName: '@multiagents/deploy-tests' };
