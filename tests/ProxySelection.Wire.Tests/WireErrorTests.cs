namespace ProxySelection.Wire.Tests;

public class WireExceptionTests
{
    [Test]
    public void WireException_CarriesErrorAndOffset()
    {
        var ex = new WireException(WireError.BadOptionLength, 42, "option length 1");
        Assert.Multiple(() =>
        {
            Assert.That(ex.Error, Is.EqualTo(WireError.BadOptionLength));
            Assert.That(ex.Offset, Is.EqualTo(42));
            Assert.That(ex.Message, Does.Contain("offset 42"));
        });
    }
}
