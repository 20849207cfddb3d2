// GET /api/model (config, size, source, training summary, defaults, system prompt) and the training loss curve image.
import type { FastifyInstance } from 'fastify';
import { ORIGINAL_SAMPLING } from '../../generate/original-sampling.js';
import { readLossCurveSvg, readTrainingSummary } from '../../io/model-report.js';
import { ApiError } from '../errors.js';
import { sendError } from '../plugins/error-handler.js';
import { GENERATE_MAX_NEW_TOKENS } from './generate.js';
import { MODEL_ID } from './openai.js';

export async function modelInfoRoutes(app: FastifyInstance): Promise<void> {
  app.get('/api/model', async (_request, reply) => {
    const model = app.generation.model;
    if (!model) {
      return sendError(
        reply,
        new ApiError(503, 'The model is still loading.', 'server_error', null, 'model_loading', 5),
      );
    }
    const c = model.config;
    return {
      id: MODEL_ID,
      config: {
        vocab_size: c.vocabSize,
        n_positions: c.nPositions,
        n_embd: c.nEmbd,
        n_layer: c.nLayer,
        n_head: c.nHead,
      },
      parameters: model.parameters,
      format: model.format,
      source: model.source,
      training: await readTrainingSummary(model.dir),
      defaults: {
        temperature: ORIGINAL_SAMPLING.temperature,
        top_k: ORIGINAL_SAMPLING.topK,
        top_p: ORIGINAL_SAMPLING.topP,
        max_tokens: GENERATE_MAX_NEW_TOKENS,
      },
      system_prompt: app.settings.systemPrompt,
    };
  });

  app.get('/api/model/loss-curve.svg', async (_request, reply) => {
    const svg = app.generation.model ? await readLossCurveSvg(app.generation.model.dir) : null;
    if (!svg) {
      return sendError(
        reply,
        new ApiError(404, 'This model has no loss curve.', 'not_found_error', null, 'not_found'),
      );
    }
    return reply.type('image/svg+xml').header('cache-control', 'no-cache').send(svg);
  });
}
