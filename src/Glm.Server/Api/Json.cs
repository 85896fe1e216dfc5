using System.Text.Encodings.Web;
using System.Text.Json;

namespace Glm.Server.Api;

public static class Json
{
    /// <summary>Non-ASCII text stays readable (as OpenAI and vLLM send it); nulls are written where a field is null.</summary>
    public static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Serialize(object value) => JsonSerializer.Serialize(value, Options);
}
