using System.Security.Cryptography;
using System.Text;
using Glm.Engine;
using Glm.Server.Hosting;

namespace Glm.Server.Api;

/// <summary>Checks shared by the OpenAI endpoints.</summary>
public static class Endpoints
{
    public static ServedModel RequireModel(ModelHost host)
    {
        if (host.Draining) throw new ApiException(503, "The server is shutting down and no longer accepts requests.", type: "service_unavailable", code: "shutting_down");
        return host.Model ?? throw new ApiException(503, "The model is still loading; retry shortly.", type: "service_unavailable", code: "model_loading");
    }

    public static void CheckModelName(RequestReader r, ServedModel model)
    {
        string name = r.RequiredString("model");
        if (name != model.Name)
            throw new ApiException(404, $"The model `{name}` does not exist.", "model", "model_not_found", "invalid_request_error");
    }

    public static Sequence Submit(ServedModel model, IReadOnlyList<int> prompt, SamplingParams sampling)
    {
        try
        {
            return model.Engine.Submit(prompt, sampling);
        }
        catch (AdmissionException e)
        {
            throw e.Kind switch
            {
                AdmissionFailure.ContextTooLong => new ApiException(400, e.Message, "messages", "context_length_exceeded"),
                AdmissionFailure.QueueFull => new ApiException(429, e.Message, type: "rate_limit_error", code: "queue_full"),
                AdmissionFailure.ShuttingDown => new ApiException(503, e.Message, type: "service_unavailable", code: "shutting_down"),
                _ => ApiException.BadRequest(e.Message),
            };
        }
    }

    /// <summary>Compares API keys in constant time (hashing first so lengths do not leak either).</summary>
    public static bool KeyMatches(string? presented, string expected)
    {
        if (presented is null) return false;
        return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));
    }
}
