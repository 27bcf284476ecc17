// ESLint (flat config): TypeScript sources with typescript-eslint's recommended rules; the
// scripts, tests, benchmarks and examples (CommonJS) with ESLint's recommended rules.
'use strict';
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = require('globals');

module.exports = tseslint.config(
  { ignores: ['dist/', 'build/', 'build-*/', 'node_modules/', 'prebuilds/', 'bench/results/'] },
  {
    files: ['lib/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node, ...globals.mocha } },
    rules: { 'no-unused-vars': ['error', { argsIgnorePattern: '^_' }] },
  },
  {
    // The browser demo's page script runs in a browser, with onnxruntime-web and protobufjs loaded.
    files: ['examples/browser/classify.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser, ort: 'readonly', protobuf: 'readonly' } },
  },
  {
    // Functions the browser test hands to page.evaluate run in the page.
    files: ['test/30-browser.test.js'],
    languageOptions: { globals: { window: 'readonly' } },
  },
  {
    files: ['test/types/*.ts'],
    extends: [...tseslint.configs.recommended],
  },
);
