// Loads a GitHub Actions workflow with GitHub's own parser and exposes its jobs, steps and raw values as plain data.
import { readFileSync } from 'node:fs';
import {
  convertWorkflowTemplate,
  isBasicExpression,
  isBoolean,
  isMapping,
  isNumber,
  isSequence,
  isString,
  NoOperationTraceWriter,
  parseWorkflow,
  type WorkflowTemplate,
} from '@actions/workflow-parser';
import type { TemplateToken } from '@actions/workflow-parser/templates/tokens/template-token';

export type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

export type StepModel = {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  raw: PlainMap;
};
export type JobModel = { id: string; needs: string[]; if: string; steps: StepModel[]; raw: PlainMap };
export type WorkflowModel = {
  file: string;
  text: string;
  errors: string[];
  raw: PlainMap;
  jobs: Map<string, JobModel>;
  template: WorkflowTemplate | undefined;
};
export type PlainMap = { [key: string]: Plain };

// Expressions come back as `${{ expr }}`, like the source, so tests can read them as text.
export function toPlain(token: TemplateToken): Plain {
  if (isString(token)) return token.value;
  if (isBoolean(token) || isNumber(token)) return token.value;
  if (isBasicExpression(token)) return `\${{ ${token.expression} }}`;
  if (isSequence(token)) {
    const out: Plain[] = [];
    for (let i = 0; i < token.count; i++) out.push(toPlain(token.get(i)));
    return out;
  }
  if (isMapping(token)) {
    const out: PlainMap = {};
    for (let i = 0; i < token.count; i++) {
      const { key, value } = token.get(i);
      out[isString(key) ? key.value : key.toDisplayString()] = toPlain(value);
    }
    return out;
  }
  return null;
}

export function asMap(value: Plain | undefined): PlainMap {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

export function asList(value: Plain | undefined): Plain[] {
  return Array.isArray(value) ? value : [];
}

export async function loadWorkflow(file: string): Promise<WorkflowModel> {
  const text = readFileSync(file, 'utf8');
  const parsed = parseWorkflow({ name: file, content: text }, new NoOperationTraceWriter());
  const errors = parsed.context.errors.getErrors().map((e) => e.message);
  const raw = parsed.value ? asMap(toPlain(parsed.value)) : {};
  let template: WorkflowTemplate | undefined;
  if (parsed.value && errors.length === 0) {
    template = await convertWorkflowTemplate(parsed.context, parsed.value);
    for (const e of template.errors ?? []) errors.push(e.Message);
  }
  const jobs = new Map<string, JobModel>();
  for (const job of template?.jobs ?? []) {
    const id = job.id.value;
    const rawJob = asMap(asMap(raw.jobs)[id]);
    const rawSteps = asList(rawJob.steps).map(asMap);
    const steps = rawSteps.map((step) => ({
      id: typeof step.id === 'string' ? step.id : undefined,
      name: typeof step.name === 'string' ? step.name : undefined,
      uses: typeof step.uses === 'string' ? step.uses : undefined,
      run: typeof step.run === 'string' ? step.run : undefined,
      if: typeof step.if === 'string' ? step.if : undefined,
      raw: step,
    }));
    jobs.set(id, {
      id,
      needs: (job.needs ?? []).map((n) => n.value),
      if: job.if.expression,
      steps,
      raw: rawJob,
    });
  }
  return { file, text, errors, raw, jobs, template };
}
