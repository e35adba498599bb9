// Lint: typescript-eslint type-checked rules; an un-awaited promise (say, an audit write) is an error.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bin/**', 'scripts/**', 'bench/**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
    },
  },
  {
    // The console's browser code. Its globals are the DOM's: typescript-eslint leaves undefined names to tsc, and
    // console/tsconfig.json gives it lib "DOM" and no Node types. No server value may be parsed as HTML there.
    files: ['console/**/*.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        ...[
          'innerHTML',
          'outerHTML',
          'insertAdjacentHTML',
          'srcdoc',
          'createContextualFragment',
          'parseFromString',
        ].map((property) => ({
          property,
          message: 'Build elements with h() (console/dom.ts); never parse HTML.',
        })),
        { object: 'document', property: 'write', message: 'Build elements with h() (console/dom.ts).' },
        { object: 'document', property: 'writeln', message: 'Build elements with h() (console/dom.ts).' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'DOMParser', message: 'Never parse a server value as HTML.' },
      ],
    },
  },
  {
    files: ['eslint.config.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
