using System.Text.Json;
using Glm.Text.Templates;
using Glm.TestSupport;

namespace Glm.Text.Tests;

/// <summary>
/// Templates in the style of the Qwen3 and Llama 3.x families (reverse slices, namespaces, tojson with indent,
/// reject/join, messages[1:], raise_exception, think splitting), against Python Jinja2 configured as Hugging Face
/// configures it (tests/fixtures/templates/render.py).
/// </summary>
public class OtherTemplateFamilyTests
{
    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (var family in new[] { "qwen3-style", "llama3-style" })
            for (int i = 0; i < 7; i++) d.Add(family, i);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersExactlyAsJinja2(string family, int index)
    {
        string dir = Fixtures.Dir("templates");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var c = doc.RootElement.GetProperty(family)[index];
        var template = new ChatTemplate(File.ReadAllText(Path.Combine(dir, family + ".jinja")));
        var variables = (Dictionary<string, object?>)Values.FromJson(c.GetProperty("variables"))!;
        if (c.TryGetProperty("error", out var error))
        {
            var e = Assert.Throws<TemplateException>(() => template.Render(variables));
            Assert.Contains(error.GetString()!, e.Message);
            return;
        }
        Assert.Equal(c.GetProperty("rendered").GetString(), template.Render(variables));
    }
}
