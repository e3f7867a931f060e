/**
 * How an image is brought to size x size, named after torchvision's transforms:
 *   center-crop  Resize(size) + CenterCrop(size): the shorter side to `size`, the longer one cropped around the centre
 *   stretch      Resize((size, size)): both sides to `size`, the aspect ratio not kept
 *   pad          the longer side to `size`, the shorter one padded with black on both sides (Pad's fill 0)
 */
export const RESIZE_MODES = ['center-crop', 'stretch', 'pad'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

