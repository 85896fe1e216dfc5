using System.Text;
using System.Text.Json.Nodes;
using Glm.Models.Loading;

namespace Glm.LlamaCppBench;

/// <summary>
/// A Hugging Face glm4_moe checkpoint (GLM-4.5 / 4.6 / Air) as a llama.cpp `glm4moe` GGUF with the same bits:
/// the BF16 matrices copied as stored, routed experts stacked into one tensor per projection, norms, biases and
/// the router in F32 (exact widenings). Tensor names and metadata keys are those llama.cpp's loader reads for
/// this architecture (gguf-py's constants). The vocabulary is a placeholder of the checkpoint's size — the
/// benchmark feeds token ids, never text — led by GPT-2's 256 byte symbols, which the BPE loader requires.
/// </summary>
public static unsafe class GgufExport
{
    /// <param name="asFloat32">every matrix widened to F32 (exactly): llama.cpp then multiplies without rounding
    /// its activations to BF16, which makes the logits comparable to float32 precision (the agreement check)</param>
    public static void Write(string checkpointDir, string path, bool asFloat32 = false)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpointDir, "config.json")))!.AsObject();
        int Int(string key) => config[key]!.GetValue<int>();
        if (config["model_type"]?.GetValue<string>() != "glm4_moe") throw new NotSupportedException("only glm4_moe checkpoints are exported");
        int layers = Int("num_hidden_layers"), hidden = Int("hidden_size"), vocab = Int("vocab_size");
        int heads = Int("num_attention_heads"), kvHeads = Int("num_key_value_heads"), headDim = Int("head_dim");
        int experts = Int("n_routed_experts"), denseLead = Int("first_k_dense_replace");
        double partialRotary = config["partial_rotary_factor"]?.GetValue<double>() ?? 1.0;
        if (config["use_qk_norm"]?.GetValue<bool>() == true) throw new NotSupportedException("qk-norm checkpoints are not exported yet");

        using var ckpt = new Checkpoint(checkpointDir);
        var g = new GgufWriter();
        g.Add("general.architecture", "glm4moe");
        g.Add("general.name", "glm-bench synthetic " + Path.GetFileName(checkpointDir.TrimEnd('/')));
        g.Add("general.alignment", 32u);
        g.Add("glm4moe.block_count", (uint)layers);
        g.Add("glm4moe.context_length", (uint)Int("max_position_embeddings"));
        g.Add("glm4moe.embedding_length", (uint)hidden);
        g.Add("glm4moe.feed_forward_length", (uint)Int("intermediate_size"));
        g.Add("glm4moe.attention.head_count", (uint)heads);
        g.Add("glm4moe.attention.head_count_kv", (uint)kvHeads);
        g.Add("glm4moe.attention.key_length", (uint)headDim);
        g.Add("glm4moe.attention.value_length", (uint)headDim);
        g.Add("glm4moe.attention.layer_norm_rms_epsilon", (float)config["rms_norm_eps"]!.GetValue<double>());
        g.Add("glm4moe.rope.freq_base", (float)config["rope_theta"]!.GetValue<double>());
        g.Add("glm4moe.rope.dimension_count", (uint)(headDim * partialRotary));
        g.Add("glm4moe.expert_count", (uint)experts);
        g.Add("glm4moe.expert_used_count", (uint)Int("num_experts_per_tok"));
        g.Add("glm4moe.expert_shared_count", (uint)Int("n_shared_experts"));
        g.Add("glm4moe.expert_feed_forward_length", (uint)Int("moe_intermediate_size"));
        g.Add("glm4moe.leading_dense_block_count", (uint)denseLead);
        g.Add("glm4moe.expert_weights_scale", (float)config["routed_scaling_factor"]!.GetValue<double>());
        g.Add("glm4moe.expert_weights_norm", config["norm_topk_prob"]!.GetValue<bool>());
        g.Add("glm4moe.expert_gating_func", 2u); // sigmoid
        g.Add("glm4moe.nextn_predict_layers", 0u);
        AddVocabulary(g, vocab);

        void Copy(string gguf, string hf, params long[] ne)
        {
            var t = ckpt.Get(hf);
            if (t.DType != TensorDType.BF16) throw new NotSupportedException($"{hf}: {t.DType}, expected BF16");
            if (asFloat32) g.AddTensor(gguf, ne, GgmlType.F32, t.ByteLength * 2, s => WriteWidened(s, t));
            else g.AddTensor(gguf, ne, GgmlType.BF16, t.ByteLength, s => WriteRaw(s, t.Data, t.ByteLength));
        }
        void Widen(string gguf, string hf, long n)
        {
            var values = ckpt.ReadFloats(hf);
            if (values.Length != n) throw new InvalidDataException($"{hf}: {values.Length} values, expected {n}");
            g.AddTensor(gguf, [n], GgmlType.F32, n * 4, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())));
        }
        void WidenMatrix(string gguf, string hf, long rows, long cols)
        {
            var values = ckpt.ReadFloats(hf);
            g.AddTensor(gguf, [cols, rows], GgmlType.F32, rows * cols * 4, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())));
        }
        void Stack(string gguf, string hfFormat, long[] ne)
        {
            var parts = Enumerable.Range(0, experts).Select(e => ckpt.Get(string.Format(hfFormat, e))).ToArray();
            long bytes = parts.Sum(p => p.ByteLength);
            if (asFloat32) g.AddTensor(gguf, ne, GgmlType.F32, bytes * 2, s => { foreach (var p in parts) WriteWidened(s, p); });
            else g.AddTensor(gguf, ne, GgmlType.BF16, bytes, s => { foreach (var p in parts) WriteRaw(s, p.Data, p.ByteLength); });
        }

        int q = heads * headDim, kv = kvHeads * headDim, ff = Int("intermediate_size"), ffExp = Int("moe_intermediate_size");
        Copy("token_embd.weight", "model.embed_tokens.weight", hidden, vocab);
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}", b = $"blk.{l}";
            Widen($"{b}.attn_norm.weight", $"{p}.input_layernorm.weight", hidden);
            Copy($"{b}.attn_q.weight", $"{p}.self_attn.q_proj.weight", hidden, q);
            Copy($"{b}.attn_k.weight", $"{p}.self_attn.k_proj.weight", hidden, kv);
            Copy($"{b}.attn_v.weight", $"{p}.self_attn.v_proj.weight", hidden, kv);
            Widen($"{b}.attn_q.bias", $"{p}.self_attn.q_proj.bias", q);
            Widen($"{b}.attn_k.bias", $"{p}.self_attn.k_proj.bias", kv);
            Widen($"{b}.attn_v.bias", $"{p}.self_attn.v_proj.bias", kv);
            Copy($"{b}.attn_output.weight", $"{p}.self_attn.o_proj.weight", q, hidden);
            Widen($"{b}.post_attention_norm.weight", $"{p}.post_attention_layernorm.weight", hidden);
            if (l < denseLead)
            {
                Copy($"{b}.ffn_gate.weight", $"{p}.mlp.gate_proj.weight", hidden, ff);
                Copy($"{b}.ffn_up.weight", $"{p}.mlp.up_proj.weight", hidden, ff);
                Copy($"{b}.ffn_down.weight", $"{p}.mlp.down_proj.weight", ff, hidden);
                continue;
            }
            WidenMatrix($"{b}.ffn_gate_inp.weight", $"{p}.mlp.gate.weight", experts, hidden);
            Widen($"{b}.exp_probs_b.bias", $"{p}.mlp.gate.e_score_correction_bias", experts);
            Stack($"{b}.ffn_gate_exps.weight", p + ".mlp.experts.{0}.gate_proj.weight", [hidden, ffExp, experts]);
            Stack($"{b}.ffn_up_exps.weight", p + ".mlp.experts.{0}.up_proj.weight", [hidden, ffExp, experts]);
            Stack($"{b}.ffn_down_exps.weight", p + ".mlp.experts.{0}.down_proj.weight", [ffExp, hidden, experts]);
            int shared = ffExp * Int("n_shared_experts");
            Copy($"{b}.ffn_gate_shexp.weight", $"{p}.mlp.shared_experts.gate_proj.weight", hidden, shared);
            Copy($"{b}.ffn_up_shexp.weight", $"{p}.mlp.shared_experts.up_proj.weight", hidden, shared);
            Copy($"{b}.ffn_down_shexp.weight", $"{p}.mlp.shared_experts.down_proj.weight", shared, hidden);
        }
        Widen("output_norm.weight", "model.norm.weight", hidden);
        Copy("output.weight", "lm_head.weight", hidden, vocab);
        g.Save(path);
    }

    /// <summary>GPT-2's byte symbols (its bytes_to_unicode), then distinct placeholders up to the vocabulary size.</summary>
    private static void AddVocabulary(GgufWriter g, int vocab)
    {
        var bytes = new List<int>();
        for (int c = '!'; c <= '~'; c++) bytes.Add(c);
        for (int c = 0xA1; c <= 0xAC; c++) bytes.Add(c);
        for (int c = 0xAE; c <= 0xFF; c++) bytes.Add(c);
        var symbols = new string[256];
        var printable = new HashSet<int>(bytes);
        int extra = 0;
        for (int b = 0; b < 256; b++) symbols[b] = ((char)(printable.Contains(b) ? b : 256 + extra++)).ToString();
        var tokens = new List<string>(vocab);
        tokens.AddRange(symbols);
        for (int i = tokens.Count; i < vocab; i++) tokens.Add("tok" + i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        g.Add("tokenizer.ggml.model", "gpt2");
        g.Add("tokenizer.ggml.pre", "default");
        g.Add("tokenizer.ggml.tokens", tokens);
        g.Add("tokenizer.ggml.token_type", Enumerable.Repeat(1, vocab).ToArray());
        g.Add("tokenizer.ggml.merges", Array.Empty<string>());
        g.Add("tokenizer.ggml.bos_token_id", 256u);
        g.Add("tokenizer.ggml.eos_token_id", 257u);
    }

    /// <summary>BF16 values as F32, exactly (a 16-bit shift), a piece at a time.</summary>
    private static void WriteWidened(Stream s, TensorView t)
    {
        var buffer = new byte[1 << 22];
        var source = (ushort*)t.Data;
        long count = t.ByteLength / 2;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(buffer.Length / 4, count - done);
            fixed (byte* b = buffer)
                for (int i = 0; i < n; i++) ((uint*)b)[i] = (uint)source[done + i] << 16;
            s.Write(buffer, 0, n * 4);
            done += n;
        }
    }

    private static void WriteRaw(Stream s, byte* data, long length)
    {
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(1 << 24, length - done);
            s.Write(new ReadOnlySpan<byte>(data + done, n));
            done += n;
        }
    }
}
