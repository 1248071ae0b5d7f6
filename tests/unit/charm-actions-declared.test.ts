/**
 * Each action is declared twice: actions.yaml tells Juju (which checks `juju run`'s params
 * before the charm runs), and actionParams (zod) checks them again in the charm, with what Juju
 * cannot say (lengths, patterns). The two must agree on every action's names, types, defaults,
 * required params, enums and the refusal of unknown params.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { actionParams } from '../../src/charm/operations/actions';
import { repoRoot } from '../helpers/tmp';

interface DeclaredParam {
  type: string;
  default?: unknown;
  enum?: unknown[];
  required: boolean;
}

interface DeclaredAction {
  params: Record<string, DeclaredParam>;
  strict: boolean;
}

type YamlAction = { params?: Record<string, { type: string; default?: unknown; enum?: unknown[] }>; required?: string[]; additionalProperties?: boolean };

function fromYaml(action: YamlAction): DeclaredAction {
  const params = Object.entries(action.params ?? {}).map(([name, p]): [string, DeclaredParam] => [
    name,
    { type: p.type, ...(p.default !== undefined ? { default: p.default } : {}), ...(p.enum ? { enum: p.enum } : {}), required: (action.required ?? []).includes(name) },
  ]);
  return { params: Object.fromEntries(params), strict: action.additionalProperties === false };
}

/** What a zod field says in actions.yaml's terms. */
function fromZodField(field: z.ZodTypeAny): DeclaredParam {
  let inner = field;
  let fallback: { default?: unknown } = {};
  let optional = false;
  // Wrappers, outermost first; bounded: a schema nests a handful at most.
  for (let depth = 0; depth < 10; depth++) {
    if (inner instanceof z.ZodDefault) {
      fallback = { default: inner._def.defaultValue() };
      inner = inner._def.innerType;
    } else if (inner instanceof z.ZodOptional) {
      optional = true;
      inner = inner._def.innerType;
    } else if (inner instanceof z.ZodEffects) {
      inner = inner._def.schema;
    } else break;
  }
  const required = !optional && !('default' in fallback);
  if (inner instanceof z.ZodEnum) return { type: 'string', ...fallback, enum: [...(inner.options as string[])], required };
  if (inner instanceof z.ZodString) return { type: 'string', ...fallback, required };
  if (inner instanceof z.ZodBoolean) return { type: 'boolean', ...fallback, required };
  if (inner instanceof z.ZodNumber) return { type: inner.isInt ? 'integer' : 'number', ...fallback, required };
  throw new Error(`no actions.yaml type for ${inner.constructor.name}`);
}

function fromZod(schema: z.AnyZodObject): DeclaredAction {
  const shape = schema.shape as Record<string, z.ZodTypeAny>;
  return { params: Object.fromEntries(Object.entries(shape).map(([name, field]) => [name, fromZodField(field)])), strict: schema._def.unknownKeys === 'strict' };
}

const declared = parseYaml(fs.readFileSync(path.join(repoRoot, 'actions.yaml'), 'utf8')) as Record<string, YamlAction>;

it('actions.yaml and the charm name the same actions', () => {
  expect(Object.keys(actionParams).sort()).toEqual(Object.keys(declared).sort());
});

it.each(Object.keys(declared))('%s: the same params, types, defaults, required params and enums in both', (name) => {
  const schema = actionParams[name as keyof typeof actionParams] as z.AnyZodObject;
  expect(fromZod(schema)).toEqual(fromYaml(declared[name] as YamlAction));
});
