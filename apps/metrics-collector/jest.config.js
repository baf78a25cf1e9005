module.exports = { ...require('../../jest.preset.js'), displayName: '@multiagents/metrics-collector' };
