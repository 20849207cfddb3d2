# The service's size, checked against the model before anything is deployed: the CPU/memory combinations Cloud
# Run allows, and the memory the model needs by the rule .github/scripts/size-service.mjs applies (and
# docs/deploy.md states). Only locals: test/delivery evaluates this file with `terraform console`.
locals {
  # Memory a CPU count allows, in MiB (https://cloud.google.com/run/docs/configuring/services/cpu).
  cpu_memory_mib = {
    "1" = { min = 512, max = 4096 }
    "2" = { min = 512, max = 8192 }
    "4" = { min = 2048, max = 16384 }
    "6" = { min = 4096, max = 24576 }
    "8" = { min = 4096, max = 32768 }
  }

  memory_mib = tonumber(regex("^[0-9]+", var.memory)) * (endswith(var.memory, "Gi") ? 1024 : 1)

  # One generation worker per vCPU (the container's WORKERS).
  workers = tonumber(var.cpu)

  # The rule: 128 MiB for Node, the HTTP stack and the tokenizer, the weights as resident at their peak
  # (model_weights_bytes), and per worker its session and thread (model_worker_bytes); plus 25% for the garbage
  # collector and bursts. Null when the model is not stated (as in the inputs of environments deployed before it
  # was): destroy works, apply is refused.
  model_memory_mib = (var.model_weights_bytes == null || var.model_worker_bytes == null ? null :
    ceil((128 + (var.model_weights_bytes + local.workers * var.model_worker_bytes) / 1048576) * 1.25)
  )

  memory_fits_cpu   = local.memory_mib >= local.cpu_memory_mib[var.cpu].min && local.memory_mib <= local.cpu_memory_mib[var.cpu].max
  memory_fits_model = local.model_memory_mib == null ? false : local.memory_mib >= local.model_memory_mib
}
