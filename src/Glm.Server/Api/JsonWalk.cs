using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>Visits every string in a JSON value (property names first, then values), with the path of each ("a.b[2]").</summary>
internal static class JsonWalk
{
    /// <param name="onName">called with a property's name element and the path of the object holding it, before its value is visited</param>
    /// <param name="onString">called with each string value and its path</param>
    public static void Strings(JsonElement e, string path, Action<JsonProperty, string> onName, Action<JsonElement, string> onString)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    onName(p, path);
                    Strings(p.Value, path.Length == 0 ? p.Name : $"{path}.{p.Name}", onName, onString);
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray()) Strings(item, $"{path}[{i++}]", onName, onString);
                break;
            case JsonValueKind.String:
                onString(e, path);
                break;
        }
    }
}
