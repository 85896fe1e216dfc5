namespace Glm.Kernels.Formats;

/// <summary>IEEE half precision through <see cref="Half"/>, which converts exactly up and rounds to nearest even down.</summary>
public static class Float16
{
    public static float ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort FromFloat(float value) => BitConverter.HalfToUInt16Bits((Half)value);
}
