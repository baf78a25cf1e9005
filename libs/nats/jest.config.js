module.exports = { ...require('../../jest.preset.js'), displayName: '@multiagents/nats' };
