module.exports = { ...require('../../jest.preset.js'), displayName: '@multiagents/example-research-agents' };
