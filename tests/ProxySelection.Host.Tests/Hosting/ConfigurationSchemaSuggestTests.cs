using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>The "did you mean" hint on an unknown configuration key.</summary>
public sealed class ConfigurationSchemaSuggestTests
{
    [Test]
    public void Suggest_NoKnownKeys_ReturnsNoSuggestion()
    {
        Assert.That(ConfigurationSchema.Suggest("ProbeTimout", []), Is.Empty);
    }

    [Test]
    public void Suggest_KeyWithinThreeEdits_NamesTheClosestKnownKey()
    {
        Assert.That(ConfigurationSchema.Suggest("probetimout", ["Mode", "ProbeTimeout", "DrainTimeout"]), Is.EqualTo(" (did you mean ProbeTimeout?)"));
    }

    [Test]
    public void Suggest_NoKnownKeyWithinThreeEdits_ReturnsNoSuggestion()
    {
        Assert.That(ConfigurationSchema.Suggest("Completely", ["Mode", "Ports"]), Is.Empty);
    }
}
